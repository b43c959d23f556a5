// Benchmark peer: panva's node-oidc-provider, configured to mirror the
// authserver benchmark setup (one client_credentials client, JWT access
// tokens, introspection).  Started by bench/run.py as
//
//   NODE_ENV=production node peer.mjs PORT
//
// with BENCH_ALG, BENCH_CLIENT_ID and BENCH_CLIENT_SECRET in the environment.
// It must be run from a directory where `oidc-provider` is installed.

import * as crypto from 'node:crypto';

import Provider from 'oidc-provider';

const port = Number.parseInt(process.argv[2] ?? '', 10);
if (!Number.isInteger(port) || port <= 0 || port > 65535) {
  console.error('usage: node peer.mjs PORT');
  process.exit(2);
}

const alg = process.env.BENCH_ALG ?? 'RS256';
const clientId = process.env.BENCH_CLIENT_ID ?? 'bench';
const clientSecret = process.env.BENCH_CLIENT_SECRET;
if (!clientSecret) {
  console.error('BENCH_CLIENT_SECRET must be set');
  process.exit(2);
}

// JWT access tokens go to this resource server (the default one).
const AUDIENCE = 'https://api.example.com';
// node-oidc-provider refuses to introspect JWT access tokens
// ("Structured JWT Tokens cannot be introspected"), so the introspection
// scenario asks for an opaque token through this second resource indicator.
const OPAQUE_RESOURCE = 'urn:bench:opaque';
const SCOPE = 'all';
const TTL = 3600;

function signingKey(algorithm) {
  let pair;
  switch (algorithm) {
    case 'RS256':
      pair = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
      break;
    case 'ES256':
      pair = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
      break;
    case 'EdDSA':
      pair = crypto.generateKeyPairSync('ed25519');
      break;
    default:
      throw new Error(`unsupported algorithm ${algorithm}`);
  }
  const jwk = pair.privateKey.export({ format: 'jwk' });
  return { ...jwk, alg: algorithm, use: 'sig', kid: `bench-${algorithm.toLowerCase()}` };
}

const configuration = {
  jwks: { keys: [signingKey(alg)] },
  clients: [
    {
      client_id: clientId,
      client_secret: clientSecret,
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
      token_endpoint_auth_method: 'client_secret_basic',
      id_token_signed_response_alg: alg,
      scope: SCOPE,
    },
  ],
  clientDefaults: { id_token_signed_response_alg: alg },
  scopes: [SCOPE],
  ttl: {
    AccessToken: TTL,
    ClientCredentials: TTL,
  },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    introspection: {
      enabled: true,
      // Same rule as the default policy, defined here so the provider does
      // not print a "you SHOULD change it" notice.
      allowedPolicy: async (ctx, client, token) => (
        client.clientAuthMethod !== 'none' || token.clientId === client.clientId
      ),
    },
    resourceIndicators: {
      enabled: true,
      defaultResource: async () => AUDIENCE,
      useGrantedResource: async () => true,
      getResourceServerInfo: async (ctx, resourceIndicator) => {
        if (resourceIndicator === AUDIENCE) {
          return {
            scope: SCOPE,
            audience: AUDIENCE,
            accessTokenTTL: TTL,
            accessTokenFormat: 'jwt',
            jwt: { sign: { alg } },
          };
        }
        if (resourceIndicator === OPAQUE_RESOURCE) {
          return {
            scope: SCOPE,
            audience: AUDIENCE,
            accessTokenTTL: TTL,
            accessTokenFormat: 'opaque',
          };
        }
        throw new Provider.errors.InvalidTarget();
      },
    },
  },
};

const provider = new Provider(`http://127.0.0.1:${port}`, configuration);
// Since v9 the Provider is itself the Koa app. Silence Koa's default error
// logging: errors are counted by wrk, not printed per request.
provider.silent = true;

const server = provider.listen(port, '127.0.0.1');
server.on('listening', () => {
  console.log(`peer listening on http://127.0.0.1:${port} (${alg})`);
});
server.on('error', (err) => {
  console.error(err);
  process.exit(1);
});

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => server.close(() => process.exit(0)));
}

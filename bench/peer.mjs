// Benchmark peer: panva's node-oidc-provider, configured to mirror the
// authserver benchmark setup (one client_credentials client, JWT access
// tokens, introspection).  Started by bench/run.py as
//
//   NODE_ENV=production node peer.mjs PORT
//
// with BENCH_ALG, BENCH_CLIENT_ID and BENCH_CLIENT_SECRET in the environment
// (BENCH_WEB_CLIENT_ID and BENCH_REDIRECT_URI for the browser and device client).
// It must be run from a directory where `oidc-provider` is installed.
//
// Sign-in and consent are interactions in oidc-provider. Here there is no page: a
// GET of the interaction URL (/interaction/UID) signs in BENCH_ACCOUNT and grants
// what the client asked for (a Grant saved with its scopes and the resource's
// scope), at once. run.py follows the redirects of one /authorize with a cookie
// jar; afterwards the `_session` cookie names a session whose grant
// (session.grantIdFor, read by the default loadExistingGrant) covers the request,
// so every later /authorize with that cookie answers with a code straight away.

import * as crypto from 'node:crypto';

import Provider from 'oidc-provider';
// The default in-memory adapter, with a bigger store: the default's LRU holds 1000
// entries, fewer than one run makes (device codes, refresh tokens, sessions), and
// would drop live ones (a device code polled then answers "not found").
import MemoryAdapter from 'oidc-provider/lib/adapters/memory_adapter.js';
import LRU from 'oidc-provider/lib/helpers/lru.js';

const store = new LRU({ maxSize: 1_000_000 });

const port = Number.parseInt(process.argv[2] ?? '', 10);
if (!Number.isInteger(port) || port <= 0 || port > 65535) {
  console.error('usage: node peer.mjs PORT');
  process.exit(2);
}

const alg = process.env.BENCH_ALG ?? 'RS256';
const clientId = process.env.BENCH_CLIENT_ID ?? 'bench';
const clientSecret = process.env.BENCH_CLIENT_SECRET;
const webClientId = process.env.BENCH_WEB_CLIENT_ID ?? 'bench-web';
const redirectUri = process.env.BENCH_REDIRECT_URI ?? 'http://127.0.0.1:9/cb';
const BENCH_ACCOUNT = 'bench-user';
const DEVICE_CODE = 'urn:ietf:params:oauth:grant-type:device_code';
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
  adapter: (model) => new MemoryAdapter(model, store),
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
    {
      // The authorization code (PKCE), refresh (rotated) and device scenarios.
      client_id: webClientId,
      client_secret: clientSecret,
      grant_types: ['authorization_code', 'refresh_token', DEVICE_CODE],
      response_types: ['code'],
      redirect_uris: [redirectUri],
      token_endpoint_auth_method: 'client_secret_basic',
      id_token_signed_response_alg: alg,
      scope: `openid offline_access ${SCOPE}`,
    },
  ],
  // Every grant of a client allowed refresh tokens gets one (as authserver does for
  // a client registered without offline_access), and each refresh rotates it.
  issueRefreshToken: async (ctx, client) => client.grantTypeAllowed('refresh_token'),
  rotateRefreshToken: true,
  clientDefaults: { id_token_signed_response_alg: alg },
  scopes: ['openid', 'offline_access', SCOPE],
  ttl: {
    AccessToken: TTL,
    ClientCredentials: TTL,
    AuthorizationCode: 60,
    DeviceCode: 600,
    Grant: 14 * 24 * 3600,
    IdToken: TTL,
    Interaction: 600,
    RefreshToken: 14 * 24 * 3600,
    Session: 14 * 24 * 3600,
  },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    deviceFlow: { enabled: true },
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
if (process.env.BENCH_DEBUG) {
  // Why requests fail (in the peer's log): BENCH_DEBUG=1 python bench/run.py ...
  for (const event of ['grant.error', 'authorization.error', 'server_error']) {
    provider.on(event, (ctx, err) => console.log(event, err.message, err.error_detail ?? ''));
  }
}

// The interaction "page": sign BENCH_ACCOUNT in and grant what was asked, no form.
provider.use(async (ctx, next) => {
  if (ctx.method !== 'GET' || !ctx.path.startsWith('/interaction/')) {
    await next();
    return;
  }
  const details = await provider.interactionDetails(ctx.req, ctx.res);
  const { params } = details;
  const grant = details.grantId
    ? await provider.Grant.find(details.grantId)
    : new provider.Grant({ accountId: BENCH_ACCOUNT, clientId: params.client_id });
  grant.addOIDCScope(String(params.scope ?? 'openid'));
  grant.addResourceScope(AUDIENCE, SCOPE);
  const grantId = await grant.save();
  const returnTo = await provider.interactionResult(
    ctx.req,
    ctx.res,
    { login: { accountId: BENCH_ACCOUNT }, consent: { grantId } },
    { mergeWithLastSubmission: false },
  );
  ctx.redirect(returnTo);
});

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

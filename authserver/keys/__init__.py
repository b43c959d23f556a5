"""Signing keys: generation, rotation schedule, JWKS and signing. No HTTP here."""

from .manager import KeyEncryptor, KeyManager, KeyStatus, TokenSignatureError

__all__ = ["KeyEncryptor", "KeyManager", "KeyStatus", "TokenSignatureError"]

"""An encrypted text field for secrets kept in the database (role external ids, webhook URLs, check headers).

Keys: settings.FIELD_ENCRYPTION_KEYS, from FIELD_ENCRYPTION_KEY (comma-separated Fernet keys; the
first encrypts, every one decrypts, so a key is rotated by putting the new one first, running
`manage.py rotate_field_keys`, then removing the old one). Production must set it; the embedded
mode derives one key from SECRET_KEY. A value that no key decrypts raises UndecryptableValue:
an empty webhook URL or external id would fail later and further from the cause.
"""

from __future__ import annotations

import base64
import hashlib
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.db import models


class UndecryptableValue(ValueError):
    pass


def derived_key(secret_key: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(("field-encryption:" + secret_key).encode()).digest()).decode()


def field_keys() -> tuple[str, ...]:
    keys = tuple(getattr(settings, "FIELD_ENCRYPTION_KEYS", None) or ())
    return keys or (derived_key(settings.SECRET_KEY),)


@lru_cache(maxsize=8)
def _multifernet(keys: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([Fernet(k.encode()) for k in keys])


def fernet() -> MultiFernet:
    return _multifernet(field_keys())


class EncryptedTextField(models.TextField):
    """Stored as Fernet ciphertext prefixed with 'enc:'; read back as the clear value."""

    PREFIX = "enc:"

    def get_prep_value(self, value):
        value = super().get_prep_value(value)
        if value in (None, ""):
            return value
        return self.PREFIX + fernet().encrypt(str(value).encode()).decode()

    def from_db_value(self, value, expression, connection):
        if value in (None, "") or not str(value).startswith(self.PREFIX):
            return value
        try:
            return fernet().decrypt(value[len(self.PREFIX):].encode()).decode()
        except InvalidToken as exc:
            where = f"{self.model._meta.label}.{self.name}" if hasattr(self, "model") else "an encrypted field"
            raise UndecryptableValue(
                f"{where} holds a value that none of the {len(field_keys())} FIELD_ENCRYPTION_KEY key(s) decrypts: "
                "was its key removed before `manage.py rotate_field_keys` ran?") from exc

"""Global credentials (``credentials/store/system/domain/_/``): create, update, delete."""

from __future__ import annotations

import json
from urllib.parse import quote
from xml.sax.saxutils import escape

from activities.jenkins.models import CredentialKind
from activities.jenkins.transport import JenkinsTransport

_CRED_CLASS = {
    "usernamePassword": "com.cloudbees.plugins.credentials.impl.UsernamePasswordCredentialsImpl",
    "string": "org.jenkinsci.plugins.plaincredentials.impl.StringCredentialsImpl",
}
_CRED_STORE = "credentials/store/system/domain/_/"


class CredentialsMixin(JenkinsTransport):
    """Credentials whose values come from Kubernetes Secrets and never reach a log or an error."""

    def credential_exists(self, cred_id: str) -> bool:
        path = f"{_CRED_STORE}credential/{quote(cred_id, safe='')}/api/json"
        return self._get_json_or_none(path, f"credential {cred_id}") is not None

    def ensure_credential(
        self,
        cred_id: str,
        kind: CredentialKind,
        *,
        username: str | None = None,
        password: str | None = None,
        secret: str | None = None,
        description: str = "",
    ) -> bool:
        """Create or update a global credential (``usernamePassword`` or secret text ``string``).

        Values come from the calling activity (read from a Kubernetes Secret) and never reach a log or an
        error message. Returns True when created, False when updated.
        """
        if kind == "usernamePassword":
            if username is None or password is None:
                raise ValueError("usernamePassword credentials need username and password")
            fields = {"username": username, "password": password}
        elif kind == "string":
            if secret is None:
                raise ValueError("string credentials need secret")
            fields = {"secret": secret}
        else:
            raise ValueError(f"unknown credential kind {kind!r}")
        cls = _CRED_CLASS[kind]

        def op() -> bool:
            if self.credential_exists(cred_id):
                body = "".join(f"<{k}>{escape(v)}</{k}>" for k, v in fields.items())
                xml = (
                    f"<{cls}><scope>GLOBAL</scope><id>{escape(cred_id)}</id>"
                    f"<description>{escape(description)}</description>{body}</{cls}>"
                )
                self._post(
                    f"{_CRED_STORE}credential/{quote(cred_id, safe='')}/config.xml",
                    f"update credential {cred_id}",
                    data=xml.encode(),
                    headers={"Content-Type": "application/xml; charset=utf-8"},
                    config_write=True,
                )
                return False
            payload = {
                "": "0",
                "credentials": {
                    "scope": "GLOBAL",
                    "id": cred_id,
                    "description": description,
                    "$class": cls,
                    **fields,
                },
            }
            self._post(
                f"{_CRED_STORE}createCredentials",
                f"create credential {cred_id}",
                data={"json": json.dumps(payload)},
                config_write=True,
            )
            return True

        return self._retrying(f"ensure credential {cred_id}", op)

    def delete_credential(self, cred_id: str) -> bool:
        """Delete a credential; False when it did not exist."""

        def op() -> bool:
            if not self.credential_exists(cred_id):
                return False
            self._post(
                f"{_CRED_STORE}credential/{quote(cred_id, safe='')}/doDelete",
                f"delete credential {cred_id}",
                ok_404=True,
            )
            return True

        return self._retrying(f"delete credential {cred_id}", op)


__all__ = ["CredentialsMixin"]

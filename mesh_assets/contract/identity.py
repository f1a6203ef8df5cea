"""Who is who: the identities of a domain's team members, as ``domain.yaml`` lists them (docs/governance.md).

An identity is an e-mail address (``alice@example.com``, as ``git config user.email`` gives it) or a git host
user handle (``@alice``). Identities compare normalised: surrounding spaces dropped and lower-cased, so
``Alice@Example.com`` and ``alice@example.com`` are one person (e-mail addresses and git host handles are
case-insensitive in practice; RFC 5321 lets a mail server tell local parts apart by case, which no git host
does). ``mesh`` only compares the identities written in files and given on the command line; what makes an
identity real is the git host's review: ``CODEOWNERS`` (mesh_assets.governance.codeowners) makes a member of the
producer's team approve every change of its folder, request files included.
"""

from __future__ import annotations

import re
import subprocess

from mesh_assets.errors import MeshError

# allow-list: one address with a dotted host, or a git host user handle (no groups: mesh cannot resolve them)
_EMAIL = re.compile(r"[A-Za-z0-9._%+'-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+")
_HANDLE = re.compile(r"@[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})")


def is_identity(value: object) -> bool:
    """Whether ``value`` is an identity: an e-mail address or a ``@handle`` (see the module docstring)."""
    return isinstance(value, str) and bool(_EMAIL.fullmatch(value.strip()) or _HANDLE.fullmatch(value.strip()))


def normalise(identity: str) -> str:
    """``identity`` as compared: stripped and lower-cased."""
    return identity.strip().lower()


def same_identity(a: str, b: str) -> bool:
    """Whether ``a`` and ``b`` name the same person (normalised, case-insensitive)."""
    return normalise(a) == normalise(b)


def is_member(identity: str, members: tuple[str, ...] | list[str]) -> bool:
    """Whether ``identity`` is one of ``members`` (normalised)."""
    return normalise(identity) in {normalise(m) for m in members}


def git_user_email() -> str:
    """``git config user.email``, or ``""`` when git or the setting is missing."""
    try:
        return subprocess.run(["git", "config", "user.email"], capture_output=True, text=True,
                              timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def current_user(given: str | None = None, option: str = "--by") -> str:
    """The acting identity: ``given`` (a command-line option) if set, else ``git config user.email``.

    Raises:
        MeshError: neither is set, or the value is no identity (the message names ``option`` and the fix).
    """
    who = (given or git_user_email()).strip()
    if not who:
        raise MeshError(f"who acts? set git config user.email (the address your git host knows) or pass "
                        f"{option} you@example.com")
    if not is_identity(who):
        raise MeshError(f"{option} '{who}' is not an identity; write an e-mail address (you@example.com) or a "
                        "git host handle (@you)")
    return who

"""Who may do what (issue 13): ACL matching, roles, users and tokens, the audit trail.

- ``acl.py``: the pure ACL matcher (wazo style: ``*`` one segment, ``#`` any depth,
  ``!`` a denial that wins, ``me`` the caller's own agent).
- ``roles.py``: the permission vocabulary, the built-in roles and the ACL a principal
  holds (pure: config in, strings out).
- ``passwords.py``, ``users.py``: argon2 password hashes (always in a thread) and the
  users and tokens kept in the store.
- ``audit.py``: the audit trail the bridge writes through the store's journal, and
  ``append`` for commands that audit what they do.
- ``ratelimit.py``: failed logins slowed per address (time passed in).
"""

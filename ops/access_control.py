"""Who may do what on the broker: one SCRAM principal per service role and per unit, with exactly its ACLs.

Granting creates the principal's SCRAM-SHA-512 credential (its password kept in the credentials directory, one file
per principal, made on first grant and reused after) and the ACLs of its role; revoking deletes both. Both are
idempotent and return what they changed. The administrator (the cluster's super user) runs them.

The roles and their rights (docs/security.md):

- ``intake``: write the raw topics (idempotently) and read them back (its index of accepted submission ids).
- ``worker``: read the raw topics, the reference and every unit's actions; read and write its internal topics,
  its changelogs, its consumer groups; write (and create) the unit queues.
- ``unit-<id>``: read its own queue with its own consumer group; write its own actions topic. Nothing else.
- ``national-stats``: read the unit queues with its own group; write nothing.
- ``monitoring``: describe the topics and groups (offsets, for the lag exporter); read no record.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass

from kafka import KafkaAdminClient
from kafka.admin import (
    ACL,
    ACLFilter,
    ACLOperation,
    ACLPermissionType,
    ACLResourcePatternType,
    ResourcePattern,
    ResourcePatternFilter,
    ResourceType,
)
from kafka.admin._users import ScramMechanism, UserScramCredentialDeletion, UserScramCredentialUpsertion

from schemas.topics import Topics
from signalements.kafka_clients import new_admin
from signalements.kafka_security import Role, principal_name, unit_role
from signalements.private_files import write_private
from signalements.settings import Settings
from signalements.topic_admin import ensure_topics, unit_topic_config

SERVICE_ROLES = (Role.INTAKE, Role.WORKER, Role.NATIONAL_STATS, Role.MONITORING)
LITERAL = ACLResourcePatternType.LITERAL
PREFIXED = ACLResourcePatternType.PREFIXED
READ, WRITE, CREATE, DESCRIBE = ACLOperation.READ, ACLOperation.WRITE, ACLOperation.CREATE, ACLOperation.DESCRIBE


@dataclass(frozen=True, order=True)
class Right:
    """One allowed operation on one resource (what an ACL says, without its principal)."""

    resource_type: ResourceType
    name: str
    pattern: ACLResourcePatternType
    operation: ACLOperation

    def describe(self) -> str:
        how = "prefix " if self.pattern == PREFIXED else ""
        return f"{self.operation.name} {self.resource_type.name.lower()} {how}{self.name}"


def _rights(resource_type: ResourceType, names: Iterable[str], pattern: ACLResourcePatternType,
            *operations: ACLOperation) -> list[Right]:
    return [Right(resource_type, name, pattern, operation) for name in names for operation in operations]


def _everything(settings: Settings) -> tuple[str, ACLResourcePatternType]:
    """Every resource of the namespace: a prefix, or all of them when the namespace is empty."""
    return (settings.topic_namespace, PREFIXED) if settings.topic_namespace else ("*", LITERAL)


def role_rights(settings: Settings, role: str) -> list[Right]:
    """What ``role`` may do, and nothing more."""
    topics = Topics(settings.topic_namespace)
    topic, group, cluster = ResourceType.TOPIC, ResourceType.GROUP, ResourceType.CLUSTER
    idempotent = [Right(cluster, "kafka-cluster", LITERAL, ACLOperation.IDEMPOTENT_WRITE)]
    if role == Role.INTAKE:
        return (_rights(topic, topics.raw_all, LITERAL, WRITE, READ, DESCRIBE, CREATE) + idempotent)
    if role == Role.WORKER:
        app_id = settings.consumer_group(settings.worker_id)
        internal = [topics.normalized, topics.enriched, topics.unrouted, topics.dead_letter]
        return (
            _rights(topic, [*topics.raw_all, topics.reference_competence], LITERAL, READ, DESCRIBE, CREATE)
            + _rights(topic, internal, LITERAL, READ, WRITE, DESCRIBE, CREATE)
            + _rights(topic, [f"{topics.namespace}unit."], PREFIXED, WRITE, DESCRIBE, CREATE)
            + _rights(topic, [f"{topics.namespace}actions."], PREFIXED, READ, DESCRIBE)
            # Faust's changelogs and its own topics are named after the application id, as are its groups.
            + _rights(topic, [app_id], PREFIXED, READ, WRITE, DESCRIBE, CREATE, ACLOperation.DESCRIBE_CONFIGS)
            + _rights(group, [app_id], PREFIXED, READ, DESCRIBE)
            + idempotent
        )
    if role == Role.NATIONAL_STATS:
        return (_rights(topic, [f"{topics.namespace}unit."], PREFIXED, READ, DESCRIBE)
                + _rights(group, [settings.consumer_group("national-stats")], LITERAL, READ, DESCRIBE))
    if role == Role.MONITORING:
        name, pattern = _everything(settings)
        return _rights(topic, [name], pattern, DESCRIBE) + _rights(group, [name], pattern, DESCRIBE)
    if role.startswith("unit-"):
        unit_id = role.removeprefix("unit-")
        return (
            _rights(topic, [topics.unit(unit_id)], LITERAL, READ, DESCRIBE)
            + _rights(topic, [topics.actions(unit_id)], LITERAL, WRITE, DESCRIBE)
            + _rights(group, [settings.consumer_group(f"unit-consumer.{unit_id}")], LITERAL, READ, DESCRIBE)
            + idempotent
        )
    raise ValueError(f"no such role: {role!r}")


def _principal(settings: Settings, role: str) -> str:
    return f"User:{principal_name(settings, role)}"


def _acl(principal: str, right: Right) -> ACL:
    return ACL(principal=principal, host="*", operation=right.operation, permission_type=ACLPermissionType.ALLOW,
               resource_pattern=ResourcePattern(right.resource_type, right.name, right.pattern))


def _describe_acls(admin: KafkaAdminClient, principal: str | None) -> list[ACL]:
    acls, error = admin.describe_acls(ACLFilter(
        principal=principal, host="*", operation=ACLOperation.ANY, permission_type=ACLPermissionType.ANY,
        resource_pattern=ResourcePatternFilter(ResourceType.ANY, None, ACLResourcePatternType.ANY)))
    if error is not None and getattr(error, "errno", None):
        raise RuntimeError(f"describing the ACLs of {principal or 'every principal'} failed: {error}")
    return list(acls)


def _right(acl: ACL) -> Right:
    return Right(acl.resource_pattern.resource_type, acl.resource_pattern.resource_name,
                 acl.resource_pattern.pattern_type, acl.operation)


def _held_rights(admin: KafkaAdminClient, principal: str) -> set[Right]:
    return {_right(acl) for acl in _describe_acls(admin, principal)}



class AccessControl:
    """Grants and revokes roles on one cluster, as the administrator."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def grant(self, roles: Iterable[str]) -> list[str]:
        """Grant every role in a few requests (a whole département's units at once), returning what changed."""
        roles = list(dict.fromkeys(roles))
        admin = new_admin(self.settings, Role.ADMIN, "signalements-access-control")
        try:
            changes = self._ensure_credentials(admin, roles)
            missing = [(principal, right) for role in roles
                       for principal in [_principal(self.settings, role)]
                       for right in sorted(set(role_rights(self.settings, role)) - _held_rights(admin, principal))]
            if missing:
                result = admin.create_acls([_acl(principal, right) for principal, right in missing])
                if result.get("failed"):
                    raise RuntimeError(f"creating ACLs failed: {result['failed']}")
                changes += [f"{principal}: allowed {right.describe()}" for principal, right in missing]
            changes += self._ensure_unit_topics(roles)
        finally:
            admin.close()
        return changes

    def revoke(self, roles: Iterable[str]) -> list[str]:
        changes: list[str] = []
        admin = new_admin(self.settings, Role.ADMIN, "signalements-access-control")
        try:
            for role in dict.fromkeys(roles):
                changes += self._revoke_one(admin, role)
        finally:
            admin.close()
        return changes

    def _ensure_unit_topics(self, roles: list[str]) -> list[str]:
        # Made here, by the administrator: a unit may not create topics, and its consumer subscribes at once.
        topics = Topics(self.settings.topic_namespace)
        wanted: dict[str, dict[str, str]] = {}
        for role in roles:
            if role.startswith("unit-"):
                unit_id = role.removeprefix("unit-")
                wanted[topics.unit(unit_id)] = unit_topic_config(self.settings)
                wanted[topics.actions(unit_id)] = unit_topic_config(self.settings)
        created = ensure_topics(self.settings, Role.ADMIN, wanted) if wanted else []
        return [f"created topic {name}" for name in created]

    def _ensure_credentials(self, admin: KafkaAdminClient, roles: list[str]) -> list[str]:
        """A SCRAM credential for every role whose user or password file is missing (the file's password, or new)."""
        usernames = [principal_name(self.settings, role) for role in roles]
        known = admin.describe_user_scram_credentials(usernames)
        upserts, changes = [], []
        for username in usernames:
            path = self.settings.credentials_dir / username
            has_user = bool(known.get(username, {}).get("credential_infos"))
            if has_user and path.exists():
                continue
            if not path.exists():
                write_private(path, secrets.token_urlsafe(24) + "\n")
            upserts.append(UserScramCredentialUpsertion(username, ScramMechanism.SCRAM_SHA_512, path.read_text().strip()))
            changes.append(f"User:{username}: SCRAM-SHA-512 credential {'reset' if has_user else 'created'} "
                           f"(password in {path})")
        if upserts:
            errors = {user: error for user, error in admin.alter_user_scram_credentials(upserts).items() if error}
            if errors:
                raise RuntimeError(f"creating SCRAM credentials failed: {errors}")
        return changes

    def _revoke_one(self, admin: KafkaAdminClient, role: str) -> list[str]:
        principal = _principal(self.settings, role)
        username = principal_name(self.settings, role)
        changes: list[str] = []
        held = sorted(_held_rights(admin, principal))
        if held:
            admin.delete_acls([ACLFilter(
                principal=principal, host="*", operation=ACLOperation.ANY, permission_type=ACLPermissionType.ANY,
                resource_pattern=ResourcePatternFilter(ResourceType.ANY, None, ACLResourcePatternType.ANY))])
            changes += [f"{principal}: removed {right.describe()}" for right in held]
        known = admin.describe_user_scram_credentials([username]).get(username, {})
        if known.get("credential_infos"):
            admin.alter_user_scram_credentials([UserScramCredentialDeletion(username, ScramMechanism.SCRAM_SHA_512)])
            changes.append(f"User:{username}: SCRAM credential deleted")
        path = self.settings.credentials_dir / username
        if path.exists():
            path.unlink()
            changes.append(f"removed {path}")
        return changes


def unit_roles(unit_ids: Iterable[str]) -> list[str]:
    return [unit_role(unit_id) for unit_id in unit_ids]


@dataclass(frozen=True)
class TopicAccess:
    """A topic as the broker applies it: its retention and compaction, and who may do what on it."""

    topic: str
    retention_ms: int | None
    cleanup_policy: str
    rights: tuple[str, ...]  # "User:x READ", sorted

    @property
    def retention(self) -> str:
        if self.retention_ms is None or self.retention_ms < 0:
            return "forever"
        days = self.retention_ms / 86_400_000
        return f"{days:g} d" if days >= 1 else f"{self.retention_ms / 3_600_000:g} h"


def _applies(acl: ACL, topic: str) -> bool:
    pattern = acl.resource_pattern
    if pattern.pattern_type == PREFIXED:
        return topic.startswith(pattern.resource_name)
    return pattern.resource_name in (topic, "*")


def topic_access(settings: Settings) -> list[TopicAccess]:
    """Every topic of the namespace with its effective retention and the ACLs that apply to it."""
    from kafka.admin import ConfigResource, ConfigResourceType

    admin = new_admin(settings, Role.ADMIN, "signalements-access-control")
    try:
        names = sorted(t for t in admin.list_topics() if t.startswith(settings.topic_namespace)
                       and not t.startswith("__"))
        configs = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, t) for t in names],
                                         config_filter="all").get("topic", {}) if names else {}
        acls, _ = admin.describe_acls(ACLFilter(
            principal=None, host="*", operation=ACLOperation.ANY, permission_type=ACLPermissionType.ANY,
            resource_pattern=ResourcePatternFilter(ResourceType.TOPIC, None, ACLResourcePatternType.ANY)))
    finally:
        admin.close()
    found = []
    for name in names:
        config = configs.get(name, {})
        retention = config.get("retention.ms", {}).get("value")
        rights = sorted({f"{acl.principal} {acl.operation.name}" for acl in acls
                         if _applies(acl, name) and acl.permission_type == ACLPermissionType.ALLOW})
        found.append(TopicAccess(name, int(retention) if retention is not None else None,
                                 str(config.get("cleanup.policy", {}).get("value", "delete")), tuple(rights)))
    return found

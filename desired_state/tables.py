"""SQLAlchemy Core mapping of the platform's tables (CONTRACT section 1) and the
controller's own ``reconciler`` schema. The platform's tables are read-only to the controller
except ``agents.vapi_assistant_id`` and ``org_tools``.

The platform's tables are mapped as the contract gives them; a live platform may differ
(a nullable ``agents.org_id``, no ``org_tools.definition_hash``): queries that touch an
optional column ask ``desired_state.shape`` first."""

from __future__ import annotations

from sqlalchemy import (
    ARRAY,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID

SCHEMA = "reconciler"

platform = MetaData()

organizations = Table(
    "organizations",
    platform,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("name", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("created_at", DateTime(timezone=True)),
    Column("updated_at", DateTime(timezone=True)),
)

agents = Table(
    "agents",
    platform,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("org_id", UUID(as_uuid=True), ForeignKey("organizations.id"), nullable=False),
    Column("role", Text, nullable=False),
    Column("name", Text, nullable=False),
    Column("system_prompt", Text, nullable=False),
    Column("first_message", Text),
    Column("voice", Text),
    Column("voice_provider", Text),
    Column("language", Text),
    Column("model", Text),
    Column("temperature", Numeric),
    Column("max_tokens", Integer),
    Column("max_call_duration", Integer),
    Column("voice_stability", Numeric),  # optional columns: used where they exist
    Column("voice_similarity_boost", Numeric),
    Column("vapi_phone_number_id", Text),
    Column("vapi_assistant_id", Text),
    Column("active", Boolean, nullable=False),
    Column("created_at", DateTime(timezone=True)),
    Column("updated_at", DateTime(timezone=True)),
)

org_tools = Table(
    "org_tools",
    platform,
    Column("id", BigInteger, primary_key=True),
    Column("org_id", UUID(as_uuid=True), ForeignKey("organizations.id"), nullable=False),
    Column("tool_name", String(255), nullable=False),
    Column("vapi_tool_id", String(255), nullable=False),
    Column("definition_hash", String(64)),
    Column("created_at", DateTime(timezone=True)),
    Column("updated_at", DateTime(timezone=True)),
    UniqueConstraint("org_id", "tool_name"),
)

integrations = Table(
    "integrations",
    platform,
    Column("id", UUID(as_uuid=True), primary_key=True, server_default=func.gen_random_uuid()),
    Column("org_id", UUID(as_uuid=True), ForeignKey("organizations.id"), nullable=False),
    Column("provider", Text, nullable=False),
    Column("config", JSONB, nullable=False),
)

own = MetaData(schema=SCHEMA)

tool_definitions = Table(
    "tool_definitions",
    own,
    Column("name", Text, primary_key=True),
    Column("description", Text, nullable=False),
    Column("parameters", JSONB, nullable=False),
    Column("path", Text, nullable=False),
    Column("is_async", Boolean, nullable=False, server_default=text("true")),
    Column(
        "roles", ARRAY(Text), nullable=False, server_default=text("'{inbound,outbound}'::text[]")
    ),
    Column("enabled", Boolean, nullable=False, server_default=text("true")),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

org_status = Table(
    "org_status",
    own,
    Column("org_id", UUID(as_uuid=True), primary_key=True),
    Column("state", Text, nullable=False),
    Column("message", Text),
    Column("last_synced_at", DateTime(timezone=True)),
    Column("unreconciled_since", DateTime(timezone=True)),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("reason", Text),
    Column("consecutive_failures", Integer, nullable=False, server_default=text("0")),
    CheckConstraint(
        "state in ('synced', 'progressing', 'failed', 'paused', 'blocked')",
        name="org_status_state_check",
    ),
)

vapi_objects = Table(
    "vapi_objects",
    own,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("kind", Text, nullable=False),
    Column("owner_key", Text, nullable=False),
    Column("org_id", UUID(as_uuid=True)),
    Column("vapi_id", Text),
    Column("state", Text, nullable=False),
    Column("desired_hash", Text),
    Column("observed_hash", Text),
    Column("row_hash", Text),
    Column("settings_hash", Text),
    Column("intent_at", DateTime(timezone=True)),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    UniqueConstraint("kind", "owner_key", name="vapi_objects_kind_owner_key_key"),
    CheckConstraint("kind in ('assistant', 'tool')", name="vapi_objects_kind_check"),
    CheckConstraint("state in ('creating', 'present')", name="vapi_objects_state_check"),
    Index("vapi_objects_vapi_id_idx", "vapi_id"),
)

audit_log = Table(
    "audit_log",
    own,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("reconcile_id", Text, nullable=False),
    Column("org_id", UUID(as_uuid=True)),
    Column("action", Text, nullable=False),
    Column("vapi_id", Text),
    Column("method", Text, nullable=False),
    Column("path", Text, nullable=False),
    Column("status_code", Integer),
    Column("outcome", Text, nullable=False),
    Column("detail", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("agent_id", UUID(as_uuid=True)),
    Column("cause", Text),
    Column("changes", JSONB, nullable=False, server_default=text("'[]'::jsonb")),
    Column("duration_ms", Integer),
    Index("audit_log_org_at_idx", "org_id", "at"),
    Index("audit_log_at_idx", "at"),
)

work_items = Table(
    "work_items",
    own,
    Column("org_id", UUID(as_uuid=True), primary_key=True),
    Column("generation", BigInteger, nullable=False, server_default=text("0")),
    Column("due_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("lease_owner", Text),
    Column("lease_expires_at", DateTime(timezone=True)),
    Column("fencing_token", BigInteger, nullable=False, server_default=text("0")),
    Column("claimed_generation", BigInteger),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("last_error", Text),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("interactive_since", DateTime(timezone=True)),  # set: the interactive lane
    Index(
        "work_items_interactive_idx",
        "interactive_since",
        postgresql_where=text("interactive_since is not null"),
    ),
    Index("work_items_due_idx", "due_at"),
)

replicas = Table(
    "replicas",
    own,
    Column("replica_id", Text, primary_key=True),
    Column("started_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("heartbeat_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("version", Text),
    Column("mode", Text),
    Column("paused", Boolean),
)

alerts = Table(
    "alerts",
    own,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("key", Text, nullable=False),
    Column("org_id", UUID(as_uuid=True)),
    Column("status", Text, nullable=False),
    Column("reason", Text, nullable=False),
    Column("message", Text, nullable=False, server_default=text("''")),
    Column("since", DateTime(timezone=True), nullable=False),
    Column("fired_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("resolved_at", DateTime(timezone=True)),
    CheckConstraint("status in ('firing', 'resolved')", name="alerts_status_check"),
    Index(
        "alerts_one_open_incident", "key", unique=True, postgresql_where=text("status = 'firing'")
    ),
)

alert_deliveries = Table(
    "alert_deliveries",
    own,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column(
        "alert_id",
        BigInteger,
        ForeignKey("reconciler.alerts.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("sink", Text, nullable=False),
    Column("event", Text, nullable=False),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("next_attempt_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("delivered_at", DateTime(timezone=True)),
    Column("last_error", Text),
    CheckConstraint("event in ('firing', 'resolved')", name="alert_deliveries_event_check"),
    UniqueConstraint("alert_id", "sink", "event", name="alert_deliveries_once"),
    Index("alert_deliveries_due", "next_attempt_at", postgresql_where=text("delivered_at is null")),
)

security_findings = Table(
    "security_findings",
    own,
    Column("org_id", UUID(as_uuid=True), primary_key=True),
    Column("kind", Text, primary_key=True),
    Column("location", Text, primary_key=True),
    Column("first_seen_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("last_seen_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

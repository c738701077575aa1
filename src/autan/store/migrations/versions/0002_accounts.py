"""Accounts hardened: user names unique whatever their case, an admin, sessions kept as hashes with
an expiry, and API keys made by an admin.

Existing sessions are dropped (they were kept in clear): everyone signs in again. The oldest
account becomes the admin. Of names that differ only in case ("Alice", "alice"), the newer
accounts are renamed with a number ("alice-2") so that each still signs in, under a name that
is its own.

Revision ID: 0002
"""

import unicodedata

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"


def _key(name: str) -> str:
    return unicodedata.normalize("NFKC", name).casefold()


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("username_key", sa.String(64), nullable=True))
        batch.add_column(sa.Column("is_admin", sa.Boolean, nullable=False, server_default=sa.false()))
    users = sa.table(
        "users",
        sa.column("id", sa.String),
        sa.column("username", sa.String),
        sa.column("username_key", sa.String),
        sa.column("is_admin", sa.Boolean),
        sa.column("created_at", sa.DateTime),
    )
    connection = op.get_bind()
    taken: set[str] = set()
    rows = connection.execute(sa.select(users.c.id, users.c.username).order_by(users.c.created_at)).all()
    for i, (user_id, name) in enumerate(rows):
        key, n = _key(name), 1
        while key in taken:
            n += 1
            name = f"{rows[i][1][: 60 - len(str(n))]}-{n}"
            key = _key(name)
        taken.add(key)
        values = {"username": name, "username_key": key, "is_admin": i == 0}
        connection.execute(users.update().where(users.c.id == user_id).values(**values))
    with op.batch_alter_table("users") as batch:
        batch.alter_column("username_key", existing_type=sa.String(64), nullable=False)
        batch.create_unique_constraint("uq_users_username_key", ["username_key"])

    op.drop_table("sessions")
    op.create_table(
        "sessions",
        sa.Column("token_hash", sa.String(64), primary_key=True),
        sa.Column("user_id", sa.String(32), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=True, index=True),
        sa.Column("key_hash", sa.String(64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False, index=True),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("user_id", sa.String(32), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=True, index=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("api_keys")
    op.drop_table("sessions")
    op.create_table(
        "sessions",
        sa.Column("token", sa.String(64), primary_key=True),
        sa.Column("user_id", sa.String(32), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    with op.batch_alter_table("users") as batch:
        batch.drop_constraint("uq_users_username_key", type_="unique")
        batch.drop_column("is_admin")
        batch.drop_column("username_key")

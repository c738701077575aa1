"""Responses made through OpenAI's Responses API, kept so a later one can continue them
(`previous_response_id`).

Revision ID: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"


def upgrade() -> None:
    op.create_table(
        "responses",
        sa.Column("id", sa.String(48), primary_key=True),
        sa.Column("user_id", sa.String(32), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=True, index=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("body", sa.JSON, nullable=False),  # the response as the API gave it
        sa.Column("input_items", sa.JSON, nullable=False),  # its input, as items
        sa.Column("conversation", sa.JSON, nullable=False),  # every turn so far, with its answer: what continues it
    )


def downgrade() -> None:
    op.drop_table("responses")

"""Responses made through OpenAI's Responses API, kept so a later one can continue them
(`previous_response_id`); batches of requests.

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

    op.create_table(
        "batches",
        sa.Column("id", sa.String(48), primary_key=True),
        sa.Column("user_id", sa.String(32), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=True, index=True),
        sa.Column("shape", sa.String(16), nullable=False),  # "openai" or "mistral": how it is described
        sa.Column("endpoint", sa.String(64), nullable=False),
        sa.Column("input_file_id", sa.String(40), nullable=False),
        sa.Column("model", sa.String(256), nullable=True),
        sa.Column("status", sa.String(16), nullable=False, index=True),
        sa.Column("total", sa.Integer, nullable=False),
        sa.Column("completed", sa.Integer, nullable=False),
        sa.Column("failed", sa.Integer, nullable=False),
        sa.Column("output_file_id", sa.String(40), nullable=True),
        sa.Column("error_file_id", sa.String(40), nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("meta", sa.JSON, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("batches")
    op.drop_table("responses")

"""Files uploaded for fine-tuning, fine-tuning jobs and their events.

Revision ID: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    def owner() -> sa.ForeignKey:
        return sa.ForeignKey("users.id", ondelete="CASCADE")

    op.create_table(
        "files",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("user_id", sa.String(32), owner(), nullable=True, index=True),
        sa.Column("filename", sa.String(256), nullable=False),
        sa.Column("purpose", sa.String(32), nullable=False),
        sa.Column("bytes", sa.Integer, nullable=False),
        sa.Column("num_lines", sa.Integer, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "fine_tuning_jobs",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("user_id", sa.String(32), owner(), nullable=True, index=True),
        sa.Column("shape", sa.String(16), nullable=False),  # "openai" or "mistral": how it is described
        sa.Column("model", sa.String(256), nullable=False),
        sa.Column("training_files", sa.JSON, nullable=False),
        sa.Column("validation_files", sa.JSON, nullable=False),
        sa.Column("hyperparameters", sa.JSON, nullable=False),
        sa.Column("suffix", sa.String(64), nullable=True),
        sa.Column("seed", sa.Integer, nullable=False),
        sa.Column("status", sa.String(16), nullable=False, index=True),
        sa.Column("cancel_requested", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("fine_tuned_model", sa.String(320), nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("trained_tokens", sa.Integer, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("modified_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_table(
        "fine_tuning_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("job_id", sa.String(40), sa.ForeignKey("fine_tuning_jobs.id", ondelete="CASCADE"), index=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("level", sa.String(8), nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("data", sa.JSON, nullable=True),
    )


def downgrade() -> None:
    op.drop_table("fine_tuning_events")
    op.drop_table("fine_tuning_jobs")
    op.drop_table("files")

"""SQLAlchemy models of every table; importing this package registers them all on `Base.metadata`."""

from models.access_grant import AccessGrant
from models.audit import AuditChainHead, AuditEvent, AuditLog, write_audit_event
from models.base import Base
from models.chunk import DocumentChunk
from models.document import Document
from models.tenant import Tenant
from models.user import User

__all__ = [
    "AccessGrant",
    "AuditChainHead",
    "AuditEvent",
    "AuditLog",
    "Base",
    "Document",
    "DocumentChunk",
    "Tenant",
    "User",
    "write_audit_event",
]

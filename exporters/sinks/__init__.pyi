from .base import CHUNK_SIZE, RetryPolicy, Sink, SinkSession, UploadResult, UploadStatus, check_name
from .ftp import FtpSink, FtpsSink
from .local import LocalSink
from .memory import MemorySink
from .sftp import SftpSink

__all__ = [
    "CHUNK_SIZE",
    "FtpSink",
    "FtpsSink",
    "LocalSink",
    "MemorySink",
    "RetryPolicy",
    "SftpSink",
    "Sink",
    "SinkSession",
    "UploadResult",
    "UploadStatus",
    "check_name",
]

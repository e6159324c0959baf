use thiserror::Error;

/// Why bytes could not be decoded. "Need more bytes" is not an error: the frame decoders return
/// `Ok(None)` for it.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum CodecError {
    /// The frame announces more bytes than the configured limit. The stream cannot be resumed.
    #[error("frame of {len} bytes exceeds the limit of {limit} bytes")]
    FrameTooLarge { len: u64, limit: usize },
    /// The frame starts with neither `THFT` nor `RDSN`, or not with the magic of the frames
    /// before it on the connection. The stream cannot be resumed.
    #[error("bad magic {0:02x?}: not a THFT or RDSN frame, or not the header of this connection")]
    BadMagic(Vec<u8>),
    /// A THFT header version other than 0 or 1. The stream cannot be resumed.
    #[error("unsupported THFT header version {0}")]
    UnsupportedVersion(u32),
    /// A THFT v0 header whose `hdr_length` is not 48, or a native one whose `hdr_length` is not
    /// 192. The stream cannot be resumed.
    #[error("header length {0}, expected 48 (THFT v0) or 192 (RDSN)")]
    BadHeaderLength(u32),
    /// A native frame whose non-zero CRC does not match: of the header (nothing consumed, the
    /// stream cannot be resumed) or of the body (the frame consumed).
    #[error("the {0} CRC of a native frame does not match")]
    BadChecksum(&'static str),
    /// A reply whose total length is below the 4 bytes of the length itself.
    #[error("reply length {0} is shorter than its own length field")]
    BadReplyLength(i32),
    /// The frame boundaries were sound (the whole frame was consumed) but its content was not.
    #[error("malformed {what}: {detail}")]
    Malformed { what: &'static str, detail: String },
}

impl CodecError {
    pub(crate) fn malformed(what: &'static str, detail: impl ToString) -> Self {
        CodecError::Malformed {
            what,
            detail: detail.to_string(),
        }
    }

    /// A fixed, small label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            CodecError::FrameTooLarge { .. } => "frame_too_large",
            CodecError::BadMagic(_) => "bad_magic",
            CodecError::UnsupportedVersion(_) => "bad_version",
            CodecError::BadHeaderLength(_) => "bad_header_length",
            CodecError::BadReplyLength(_) => "bad_reply_length",
            CodecError::BadChecksum(_) => "bad_checksum",
            CodecError::Malformed { .. } => "malformed",
        }
    }
}

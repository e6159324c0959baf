use thiserror::Error;

/// Why bytes could not be decoded. "Need more bytes" is not an error: the frame decoders return
/// `Ok(None)` for it.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum CodecError {
    /// The frame announces more bytes than the configured limit. The stream cannot be resumed.
    #[error("frame of {len} bytes exceeds the limit of {limit} bytes")]
    FrameTooLarge { len: u64, limit: usize },
    /// The frame does not start with `THFT`. The stream cannot be resumed.
    #[error("bad magic {0:02x?}: not a THFT frame")]
    BadMagic(Vec<u8>),
    /// A THFT header version other than 0 or 1. The stream cannot be resumed.
    #[error("unsupported THFT header version {0}")]
    UnsupportedVersion(u32),
    /// A v0 header whose `hdr_length` is not 48. The stream cannot be resumed.
    #[error("THFT v0 header length {0}, expected 48")]
    BadHeaderLength(u32),
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
            CodecError::Malformed { .. } => "malformed",
        }
    }
}

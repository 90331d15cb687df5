/// Errors from decoding index files and persisting them.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IndexError {
    /// The bytes are not a valid index file of a version this build reads.
    #[error("index file is malformed: {0}")]
    Malformed(String),
    /// The index file has a format version this build does not read.
    #[error("index file format version {0} is not supported by this build; upgrade arch")]
    UnsupportedVersion(u8),
    /// Writing a finished index file through the sink failed.
    #[error("saving index file failed: {0}")]
    Sink(#[source] crate::master::SinkError),
    /// Reading or writing the temporary file the index spills to (see
    /// `MasterIndexOptions::mem_limit`) failed.
    #[error("index spill file in the temporary directory failed (check TMPDIR's free space): {0}")]
    Spill(#[source] std::io::Error),
}

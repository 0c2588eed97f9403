//! Reading one token file: at most 1 MiB, then validated as a [`TokenRecord`].

use std::fs::File;
use std::io::{self, Read as _};
use std::path::Path;

use crate::bad_file::BadFile;
use crate::error::{Operation, StoreError};
use crate::record::TokenRecord;

/// Token files larger than this are reported, not read.
const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// Reads and validates the token file at `path`.
pub(crate) fn read_record(path: &Path) -> Result<TokenRecord, StoreError> {
    let bytes =
        read_limited(path).map_err(|error| StoreError::io(Operation::ReadFile, path, error))?;
    TokenRecord::from_json(&bytes).map_err(|reason| {
        StoreError::Invalid(BadFile {
            path: path.to_path_buf(),
            reason,
        })
    })
}

/// Reads a whole file, refusing more than [`MAX_FILE_BYTES`].
pub(crate) fn read_limited(path: &Path) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    File::open(path)?
        .take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "file is larger than 1 MiB",
        ));
    }
    Ok(bytes)
}

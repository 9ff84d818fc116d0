#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("body is not a strata.v1.Batch Protobuf message: {0}")]
    Protobuf(#[from] prost::DecodeError),
    #[error("body is not an Avro object container file: {0}")]
    Avro(String),
    #[error("{0}")]
    Payload(String),
    #[error("cannot write JSON: {0}")]
    Json(#[from] serde_json::Error),
}

impl From<apache_avro::Error> for Error {
    fn from(e: apache_avro::Error) -> Self {
        Error::Avro(e.to_string())
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

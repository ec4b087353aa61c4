//! Newline-delimited JSON: how the daemon streams logs and events.

use bytes::Bytes;
use futures_util::stream::{self, BoxStream, Stream, StreamExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// One value as a line of NDJSON (the value's JSON, then `\n`).
pub fn encode_line<T: Serialize>(value: &T) -> Result<Bytes, serde_json::Error> {
    let mut line = serde_json::to_vec(value)?;
    line.push(b'\n');
    Ok(Bytes::from(line))
}

/// A stream of chunks, cut anywhere, read as a stream of values, one per non-blank line.
/// A chunk error ends the stream after yielding it; a line that does not decode yields an
/// error and the stream goes on with the next line.
pub fn decode<T, E, S>(chunks: S) -> BoxStream<'static, Result<T, DecodeError<E>>>
where
    T: DeserializeOwned + Send + 'static,
    E: Send + 'static,
    S: Stream<Item = Result<Bytes, E>> + Send + Unpin + 'static,
{
    let state = Reader {
        chunks,
        buffer: Vec::new(),
        ended: false,
    };
    stream::unfold(state, |mut reader| async move {
        let item = reader.next_item().await?;
        Some((item, reader))
    })
    .boxed()
}

/// Why a stream item could not be read.
#[derive(Debug)]
pub enum DecodeError<E> {
    /// The underlying stream failed.
    Chunk(E),
    /// A line is not the JSON expected.
    Json(serde_json::Error),
}

struct Reader<S> {
    chunks: S,
    buffer: Vec<u8>,
    ended: bool,
}

impl<E, S> Reader<S>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
{
    async fn next_item<T: DeserializeOwned>(&mut self) -> Option<Result<T, DecodeError<E>>> {
        loop {
            if let Some(end) = self.buffer.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buffer.drain(..=end).collect();
                if let Some(item) = parse(&line) {
                    return Some(item);
                }
                continue;
            }
            if self.ended {
                let rest = std::mem::take(&mut self.buffer);
                return parse(&rest);
            }
            match self.chunks.next().await {
                Some(Ok(chunk)) => self.buffer.extend_from_slice(&chunk),
                Some(Err(err)) => {
                    self.ended = true;
                    self.buffer.clear();
                    return Some(Err(DecodeError::Chunk(err)));
                }
                None => self.ended = true,
            }
        }
    }
}

/// A line's value, or `None` for a blank line.
fn parse<T: DeserializeOwned, E>(line: &[u8]) -> Option<Result<T, DecodeError<E>>> {
    if line.iter().all(u8::is_ascii_whitespace) {
        return None;
    }
    Some(serde_json::from_slice(line).map_err(DecodeError::Json))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(parts: &[&str]) -> impl Stream<Item = Result<Bytes, String>> + Unpin + use<> {
        let parts: Vec<Result<Bytes, String>> = parts
            .iter()
            .map(|p| Ok(Bytes::from(p.to_string())))
            .collect();
        stream::iter(parts)
    }

    #[tokio::test]
    async fn values_split_across_chunks_are_joined() {
        let values: Vec<u32> = decode::<u32, _, _>(chunks(&["1\n2", "3\n\n", "4"]))
            .map(|v| v.map_err(|_| ()).unwrap())
            .collect()
            .await;
        assert_eq!(values, vec![1, 23, 4]);
    }

    #[tokio::test]
    async fn a_bad_line_is_an_error_and_the_stream_goes_on() {
        let values: Vec<Result<u32, DecodeError<String>>> =
            decode(chunks(&["1\nnope\n3\n"])).collect().await;
        assert_eq!(values.len(), 3);
        assert!(matches!(values[1], Err(DecodeError::Json(_))));
        assert!(matches!(values[2], Ok(3)));
    }

    #[tokio::test]
    async fn a_chunk_error_ends_the_stream() {
        let parts: Vec<Result<Bytes, String>> = vec![
            Ok(Bytes::from("1\n2")),
            Err("broken".to_string()),
            Ok(Bytes::from("3\n")),
        ];
        let values: Vec<Result<u32, DecodeError<String>>> =
            decode(stream::iter(parts)).collect().await;
        assert_eq!(values.len(), 2);
        assert!(matches!(&values[1], Err(DecodeError::Chunk(e)) if e == "broken"));
    }

    #[test]
    fn encoded_lines_end_with_a_newline() {
        assert_eq!(encode_line(&[1, 2]).unwrap(), Bytes::from("[1,2]\n"));
    }
}

//! Reading an agent's output one line at a time without trusting its
//! length: a line longer than the cap is kept up to the cap and the rest
//! only counted, so a runaway or hostile line cannot exhaust memory.
//!
//! It does not parse the lines (the callers know their CLI's format).

use tokio::io::AsyncBufRead;
use tokio::io::AsyncBufReadExt;

/// Reads one line (without its `\n`) into `line`, keeping at most `max`
/// bytes; returns how many bytes of it were dropped past the cap, or `None`
/// at the end of the stream.
///
/// # Errors
/// A failed read of `reader`.
pub async fn read_line_capped<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    line: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<Option<u64>> {
    line.clear();
    let mut dropped = 0u64;
    let mut any = false;
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            return Ok(any.then_some(dropped));
        }
        any = true;
        let (chunk, done) = match available.iter().position(|b| *b == b'\n') {
            Some(i) => (&available[..i], Some(i + 1)),
            None => (available, None),
        };
        let room = max.saturating_sub(line.len()).min(chunk.len());
        line.extend_from_slice(&chunk[..room]);
        dropped += (chunk.len() - room) as u64;
        let used = done.unwrap_or(available.len());
        reader.consume(used);
        if done.is_some() {
            return Ok(Some(dropped));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::BufReader;

    async fn lines(text: &str, buffer: usize, max: usize) -> Vec<(String, u64)> {
        let mut reader = BufReader::with_capacity(buffer, text.as_bytes());
        let mut line = Vec::new();
        let mut got = Vec::new();
        while let Some(cut) = read_line_capped(&mut reader, &mut line, max)
            .await
            .unwrap_or(None)
        {
            got.push((String::from_utf8_lossy(&line).into_owned(), cut));
        }
        got
    }

    #[tokio::test]
    async fn a_long_line_is_dropped_and_measured_not_held() {
        let text = format!("short\n{}\ntail", "x".repeat(100));
        assert_eq!(
            lines(&text, 7, 10).await,
            [
                ("short".to_owned(), 0),
                ("x".repeat(10), 90),
                ("tail".to_owned(), 0)
            ]
        );
    }

    #[tokio::test]
    async fn empty_lines_and_the_end_are_told_apart() {
        assert_eq!(lines("", 4, 10).await, []);
        assert_eq!(
            lines("\n\na", 1, 10).await,
            [(String::new(), 0), (String::new(), 0), ("a".to_owned(), 0)]
        );
    }
}

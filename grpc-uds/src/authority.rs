//! Rewrites what an HTTP/2 client sends so that a socket path given as `:authority`
//! becomes `localhost`; everything else passes unchanged.
//!
//! Only the client's header blocks are touched: they are decoded with the client's
//! HPACK state and encoded again with this connection's own encoder, so the server's
//! decoder follows the re-encoded stream consistently. Other frames are passed through
//! as they come, without buffering their payload.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use fluke_hpack::{Decoder, Encoder};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tonic::transport::server::Connected;

/// The client connection preface (RFC 9113, 3.4).
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const FRAME_HEADER: usize = 9;
const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;
/// The largest frame the server accepts unless it says otherwise (h2's default).
const MAX_FRAME: usize = 16_384;
/// A header block larger than this ends the connection rather than grow the buffer.
const MAX_HEADER_BLOCK: usize = 1 << 20;

/// A connection whose client's `:authority`, when it is no valid authority (a socket
/// path), reads as `localhost`.
pub struct LocalhostAuthority<S> {
    inner: S,
    rewriter: Rewriter,
    /// Bytes read from the client, not yet transformed.
    input: Vec<u8>,
    /// Transformed bytes not yet handed to the server.
    output: Vec<u8>,
    output_pos: usize,
    eof: bool,
}

impl<S> LocalhostAuthority<S> {
    /// Wraps a client connection.
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            rewriter: Rewriter::default(),
            input: Vec::new(),
            output: Vec::new(),
            output_pos: 0,
            eof: false,
        }
    }
}

impl<S: Connected> Connected for LocalhostAuthority<S> {
    type ConnectInfo = S::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for LocalhostAuthority<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if this.output_pos < this.output.len() {
                let ready = &this.output[this.output_pos..];
                let n = ready.len().min(buf.remaining());
                buf.put_slice(&ready[..n]);
                this.output_pos += n;
                if this.output_pos == this.output.len() {
                    this.output.clear();
                    this.output_pos = 0;
                }
                return Poll::Ready(Ok(()));
            }
            if this.eof {
                // What is left unparsed (a cut frame) goes through as it is.
                if this.input.is_empty() {
                    return Poll::Ready(Ok(()));
                }
                this.output = std::mem::take(&mut this.input);
                continue;
            }
            let mut chunk = [0u8; 8192];
            let mut read = ReadBuf::new(&mut chunk);
            match Pin::new(&mut this.inner).poll_read(cx, &mut read) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(())) => {
                    let filled = read.filled();
                    if filled.is_empty() {
                        this.eof = true;
                    } else {
                        this.input.extend_from_slice(filled);
                        this.rewriter
                            .process(&mut this.input, &mut this.output)
                            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                    }
                }
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for LocalhostAuthority<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The parsing state of the client's byte stream.
struct Rewriter {
    preface_seen: bool,
    /// Payload bytes of a passed-through frame still to come.
    passing: usize,
    /// A header block being collected: (stream id, HEADERS flags, priority bytes, block).
    block: Option<(u32, u8, Vec<u8>, Vec<u8>)>,
    decoder: Decoder<'static>,
    encoder: Encoder<'static>,
}

impl Default for Rewriter {
    fn default() -> Self {
        Self {
            preface_seen: false,
            passing: 0,
            block: None,
            decoder: Decoder::new(),
            encoder: Encoder::new(),
        }
    }
}

impl Rewriter {
    /// Moves what `input` holds of whole units (the preface, frame headers, passed-through
    /// payload, whole header frames) to `output`, transformed.
    fn process(&mut self, input: &mut Vec<u8>, output: &mut Vec<u8>) -> Result<(), String> {
        let mut pos = 0;
        loop {
            if !self.preface_seen {
                if input.len() - pos < PREFACE.len() {
                    break;
                }
                output.extend_from_slice(&input[pos..pos + PREFACE.len()]);
                pos += PREFACE.len();
                self.preface_seen = true;
                continue;
            }
            if self.passing > 0 {
                let n = self.passing.min(input.len() - pos);
                if n == 0 {
                    break;
                }
                output.extend_from_slice(&input[pos..pos + n]);
                pos += n;
                self.passing -= n;
                continue;
            }
            if input.len() - pos < FRAME_HEADER {
                break;
            }
            let header = &input[pos..pos + FRAME_HEADER];
            let length =
                usize::from(header[0]) << 16 | usize::from(header[1]) << 8 | usize::from(header[2]);
            let kind = header[3];
            let flags = header[4];
            let stream =
                u32::from_be_bytes([header[5], header[6], header[7], header[8]]) & 0x7fff_ffff;
            let is_header_frame = kind == HEADERS || (kind == CONTINUATION && self.block.is_some());
            if !is_header_frame {
                output.extend_from_slice(header);
                pos += FRAME_HEADER;
                self.passing = length;
                continue;
            }
            if length > MAX_HEADER_BLOCK {
                return Err(format!("a header frame of {length} bytes"));
            }
            if input.len() - pos < FRAME_HEADER + length {
                break;
            }
            let payload = &input[pos + FRAME_HEADER..pos + FRAME_HEADER + length];
            if kind == HEADERS {
                let (priority, fragment) = headers_payload(flags, payload)?;
                self.block = Some((stream, flags, priority, fragment.to_vec()));
            } else if let Some((_, _, _, block)) = self.block.as_mut() {
                block.extend_from_slice(payload);
                if block.len() > MAX_HEADER_BLOCK {
                    return Err("a header block over 1 MiB".to_owned());
                }
            }
            pos += FRAME_HEADER + length;
            if flags & END_HEADERS != 0
                && let Some((stream, first_flags, priority, block)) = self.block.take()
            {
                self.rewrite(stream, first_flags, &priority, &block, output)?;
            }
        }
        input.drain(..pos);
        Ok(())
    }

    /// Decodes one header block, fixes its authority and writes it as HEADERS (and
    /// CONTINUATION) frames.
    fn rewrite(
        &mut self,
        stream: u32,
        flags: u8,
        priority: &[u8],
        block: &[u8],
        output: &mut Vec<u8>,
    ) -> Result<(), String> {
        let mut headers = self
            .decoder
            .decode(block)
            .map_err(|e| format!("decoding a header block: {e:?}"))?;
        for (name, value) in &mut headers {
            if name.as_slice() == b":authority" && !is_authority(value) {
                *value = b"localhost".to_vec();
            }
        }
        let encoded = self
            .encoder
            .encode(headers.iter().map(|(n, v)| (n.as_slice(), v.as_slice())));
        let mut first = priority.to_vec();
        let room = MAX_FRAME - first.len();
        let split = encoded.len().min(room);
        first.extend_from_slice(&encoded[..split]);
        let rest = &encoded[split..];
        let mut first_flags = flags & (END_STREAM | PRIORITY);
        if rest.is_empty() {
            first_flags |= END_HEADERS;
        }
        frame(output, HEADERS, first_flags, stream, &first);
        let mut chunks = rest.chunks(MAX_FRAME).peekable();
        while let Some(chunk) = chunks.next() {
            let last = chunks.peek().is_none();
            frame(
                output,
                CONTINUATION,
                if last { END_HEADERS } else { 0 },
                stream,
                chunk,
            );
        }
        Ok(())
    }
}

/// A HEADERS payload without its padding: (the priority fields, the block fragment).
fn headers_payload(flags: u8, payload: &[u8]) -> Result<(Vec<u8>, &[u8]), String> {
    let mut rest = payload;
    let mut pad = 0;
    if flags & PADDED != 0 {
        let (&n, after) = rest
            .split_first()
            .ok_or("a padded HEADERS frame without its pad length")?;
        pad = usize::from(n);
        rest = after;
    }
    let mut priority = Vec::new();
    if flags & PRIORITY != 0 {
        if rest.len() < 5 {
            return Err("a HEADERS frame too short for its priority".to_owned());
        }
        priority = rest[..5].to_vec();
        rest = &rest[5..];
    }
    if pad > rest.len() {
        return Err("a HEADERS frame with more padding than payload".to_owned());
    }
    Ok((priority, &rest[..rest.len() - pad]))
}

fn frame(output: &mut Vec<u8>, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
    let length = payload.len();
    output.extend_from_slice(&[
        ((length >> 16) & 0xff) as u8,
        ((length >> 8) & 0xff) as u8,
        (length & 0xff) as u8,
        kind,
        flags,
    ]);
    output.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    output.extend_from_slice(payload);
}

/// Whether `value` is an authority `h2` accepts (it parses it as an `http` URI
/// authority); grpc-go's socket path, percent-encoded (`%2Fvar%2Flib...`), is not.
fn is_authority(value: &[u8]) -> bool {
    http::uri::Authority::try_from(value).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client_stream(authority: &str, encoder: &mut Encoder<'static>) -> Vec<u8> {
        let mut bytes = PREFACE.to_vec();
        // SETTINGS (empty), then a request's HEADERS (padded, with priority) and DATA.
        frame(&mut bytes, 0x4, 0, 0, &[]);
        let block = encoder.encode([
            (b":method".as_slice(), b"POST".as_slice()),
            (b":scheme", b"http"),
            (b":path", b"/v1beta1.Registration/Register"),
            (b":authority", authority.as_bytes()),
            (b"content-type", b"application/grpc"),
        ]);
        let mut payload = vec![2u8];
        payload.extend_from_slice(&[0, 0, 0, 0, 16]);
        payload.extend_from_slice(&block);
        payload.extend_from_slice(&[0, 0]);
        frame(
            &mut bytes,
            HEADERS,
            END_HEADERS | PADDED | PRIORITY,
            1,
            &payload,
        );
        frame(&mut bytes, 0x0, END_STREAM, 1, b"\0\0\0\0\x02ab");
        bytes
    }

    /// The frames of `bytes` after the preface: (kind, flags, stream, payload).
    fn frames(bytes: &[u8]) -> Vec<(u8, u8, u32, Vec<u8>)> {
        assert!(bytes.starts_with(PREFACE));
        let mut rest = &bytes[PREFACE.len()..];
        let mut out = Vec::new();
        while !rest.is_empty() {
            let length =
                usize::from(rest[0]) << 16 | usize::from(rest[1]) << 8 | usize::from(rest[2]);
            let stream = u32::from_be_bytes([rest[5], rest[6], rest[7], rest[8]]);
            out.push((rest[3], rest[4], stream, rest[9..9 + length].to_vec()));
            rest = &rest[9 + length..];
        }
        out
    }

    fn transform_in_pieces(bytes: &[u8], piece: usize) -> Vec<u8> {
        let mut rewriter = Rewriter::default();
        let (mut input, mut output) = (Vec::new(), Vec::new());
        for chunk in bytes.chunks(piece) {
            input.extend_from_slice(chunk);
            rewriter.process(&mut input, &mut output).expect("process");
        }
        assert!(input.is_empty(), "everything consumed");
        output
    }

    #[test]
    fn a_socket_path_authority_becomes_localhost_and_the_rest_is_kept() {
        for piece in [1, 7, 4096] {
            let mut client = Encoder::new();
            // Two requests: the second's authority comes from the client's dynamic table.
            let mut bytes =
                client_stream("/var/lib/kubelet/device-plugins/kubelet.sock", &mut client);
            let second = client_stream("/var/lib/kubelet/device-plugins/kubelet.sock", &mut client);
            bytes.extend_from_slice(&second[PREFACE.len()..]);
            let out = transform_in_pieces(&bytes, piece);
            let frames = frames(&out);
            let kinds: Vec<u8> = frames.iter().map(|f| f.0).collect();
            assert_eq!(
                kinds,
                [0x4, HEADERS, 0x0, 0x4, HEADERS, 0x0],
                "piece {piece}"
            );
            let mut server = Decoder::new();
            for (kind, flags, stream, payload) in &frames {
                if *kind != HEADERS {
                    continue;
                }
                assert_eq!((*flags, *stream), (END_HEADERS | PRIORITY, 1));
                assert_eq!(&payload[..5], &[0, 0, 0, 0, 16], "priority kept");
                let headers = server.decode(&payload[5..]).expect("decodes");
                let get = |name: &[u8]| {
                    headers
                        .iter()
                        .find(|(n, _)| n.as_slice() == name)
                        .map(|(_, v)| v.clone())
                };
                assert_eq!(get(b":authority").as_deref(), Some(b"localhost".as_slice()));
                assert_eq!(
                    get(b":path").as_deref(),
                    Some(b"/v1beta1.Registration/Register".as_slice())
                );
                assert_eq!(headers.len(), 5);
            }
            assert_eq!(frames[2].3, b"\0\0\0\0\x02ab", "DATA untouched");
        }
    }

    #[test]
    fn grpc_gos_percent_encoded_socket_path_is_no_authority() {
        assert!(!is_authority(
            b"%2Fvar%2Flib%2Fkubelet%2Fdevice-plugins%2Fkubelet.sock"
        ));
        assert!(!is_authority(
            b"/var/lib/kubelet/device-plugins/kubelet.sock"
        ));
        assert!(is_authority(b"localhost"));
        assert!(is_authority(b"127.0.0.1:10250"));
    }

    #[test]
    fn a_valid_authority_is_kept() {
        let mut client = Encoder::new();
        let out = transform_in_pieces(&client_stream("localhost:10250", &mut client), 3);
        let headers_frame = frames(&out)
            .into_iter()
            .find(|f| f.0 == HEADERS)
            .expect("HEADERS");
        let headers = Decoder::new()
            .decode(&headers_frame.3[5..])
            .expect("decodes");
        assert!(headers.contains(&(b":authority".to_vec(), b"localhost:10250".to_vec())));
    }

    #[test]
    fn a_large_block_is_split_into_continuations() {
        let mut client = Encoder::new();
        let mut bytes = PREFACE.to_vec();
        let big = "x".repeat(40_000);
        let block = client.encode([
            (b":method".as_slice(), b"POST".as_slice()),
            (b":authority", b"/run/x.sock"),
            (b"x-big", big.as_bytes()),
        ]);
        // Sent as HEADERS + CONTINUATION, as a client with a large frame size would.
        let (a, b) = block.split_at(block.len() / 2);
        frame(&mut bytes, HEADERS, 0, 3, a);
        frame(&mut bytes, CONTINUATION, END_HEADERS, 3, b);
        let out = transform_in_pieces(&bytes, 1000);
        let frames = frames(&out);
        assert!(frames.iter().all(|f| f.3.len() <= MAX_FRAME));
        assert_eq!(frames[0].0, HEADERS);
        assert!(frames[1..].iter().all(|f| f.0 == CONTINUATION));
        assert_eq!(frames.last().expect("last").1, END_HEADERS);
        let block: Vec<u8> = frames.iter().flat_map(|f| f.3.clone()).collect();
        let headers = Decoder::new().decode(&block).expect("decodes");
        assert!(headers.contains(&(b":authority".to_vec(), b"localhost".to_vec())));
        assert!(headers.contains(&(b"x-big".to_vec(), big.into_bytes())));
    }
}

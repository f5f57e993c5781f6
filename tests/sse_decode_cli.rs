//! The `sse_decode` example as a program: a stream on stdin, JSON lines on stdout.

mod common;

use std::io::Write;
use std::process::{Output, Stdio};
use std::thread;

/// Runs `cargo run --example sse_decode` with `input` on stdin and waits for it to exit.
fn run_example(input: Vec<u8>) -> Output {
    let mut child = common::cargo()
        .args(["run", "--quiet", "--example", "sse_decode"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn cargo run");
    let mut stdin = child.stdin.take().unwrap();
    // Written from a thread so a large input cannot deadlock against the output pipes.
    let writer = thread::spawn(move || {
        stdin.write_all(&input).unwrap();
        // Dropping stdin closes it: end of stream.
    });
    let output = child.wait_with_output().expect("wait for sse_decode");
    writer.join().unwrap();
    output
}

fn stdout_lines(output: &Output) -> Vec<&str> {
    std::str::from_utf8(&output.stdout).unwrap().lines().collect()
}

/// The example's own messages; cargo may add its own (a warning, a lock wait).
fn example_errors(output: &Output) -> Vec<&str> {
    std::str::from_utf8(&output.stderr).unwrap().lines().filter(|line| line.starts_with("sse_decode: ")).collect()
}

#[test]
fn decodes_a_stream_to_json_lines() {
    let mut input = Vec::new();
    // A BOM, CRLF line ends, a comment, an id.
    input.extend_from_slice(b"\xEF\xBB\xBF: hello\r\nevent: greeting\r\nid: 1\r\ndata: hi\r\n\r\n");
    // CR line ends, multi-line data, quotes and backslashes to escape.
    input.extend_from_slice("data: line one\rdata: \"two\" \\ \u{e9}\r\r".as_bytes());
    // LF, an empty id resets the last event id, invalid UTF-8 becomes U+FFFD.
    input.extend_from_slice(b"id\ndata:a\xFFb\n\n");
    // An id-only block, then a data-less block: no events.
    input.extend_from_slice(b"id: 7\n\nevent: nothing\n\n");
    input.extend_from_slice(b"data: {\"n\":1}\n\n");
    // Cut off by the end of the stream: dropped.
    input.extend_from_slice(b"data: never seen\n");

    let output = run_example(input);
    assert!(output.status.success(), "{output:?}");
    assert_eq!(
        stdout_lines(&output),
        [
            r#"{"type":"greeting","data":"hi","lastEventId":"1"}"#,
            r#"{"type":"message","data":"line one\n\"two\" \\ é","lastEventId":"1"}"#,
            r#"{"type":"message","data":"a�b","lastEventId":""}"#,
            r#"{"type":"message","data":"{\"n\":1}","lastEventId":"7"}"#,
        ]
    );
    assert!(example_errors(&output).is_empty(), "{output:?}");
}

#[test]
fn reports_an_oversized_event_and_goes_on() {
    let mut input = b"data: before\n\ndata: ".to_vec();
    input.resize(input.len() + 2 * 1024 * 1024, b'x');
    input.extend_from_slice(b"\n\ndata: after\n\n");

    let output = run_example(input);
    assert!(output.status.success(), "{output:?}");
    assert_eq!(
        stdout_lines(&output),
        [
            r#"{"type":"message","data":"before","lastEventId":""}"#,
            r#"{"type":"message","data":"after","lastEventId":""}"#,
        ]
    );
    // Reported once, however many reads the event spanned.
    assert_eq!(example_errors(&output), ["sse_decode: event larger than the limit of 1048576 bytes; it was discarded"]);
}

#[test]
fn empty_input_prints_nothing() {
    let output = run_example(Vec::new());
    assert!(output.status.success(), "{output:?}");
    assert!(output.stdout.is_empty(), "{output:?}");
    assert!(example_errors(&output).is_empty(), "{output:?}");
}

use std::io::Read;

use super::*;

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).expect("write");
}

#[tokio::test]
async fn rotated_logs_are_gzipped_the_latest_kept_plain_and_leftovers_removed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("0.log");
    let name = |suffix: &str| dir.path().join(format!("0.log.{suffix}"));
    write(&name("20260101-000000.gz"), "oldest");
    write(&name("20260102-000000"), "second\n");
    // An interrupted compression: the temporary file, and an original already compressed.
    write(&name("20260102-000000.tmp"), "partial");
    write(&name("20260103-000000"), "third\n");
    write(&name("20260103-000000.gz"), "third, compressed");
    write(&log, "current\n");

    // maxFiles 4: two rotated files may stay beside the one about to be made and the log.
    make_room(&log, 4).await.expect("make room");
    let mut left: Vec<String> = std::fs::read_dir(dir.path())
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(
        left,
        vec![
            "0.log",
            "0.log.20260102-000000.gz",
            "0.log.20260103-000000.gz"
        ]
    );
    let mut text = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(name("20260102-000000.gz")).expect("open"))
        .read_to_string(&mut text)
        .expect("gunzip");
    assert_eq!(text, "second\n");
}

use std::path::Path;

use super::*;
use crate::source::ManifestOrigin;
use crate::source::defaults::apply_api_defaults;
use crate::source::manifest::{Decoded, decode};

/// Node and directory the golden UIDs were computed for (see golden.tsv's generator).
const NODE: &str = "node-a";
const SOURCE_DIR: &str = "/etc/kubernetes/manifests";

struct Golden {
    file: String,
    uid: String,
    dump: String,
}

fn golden() -> Vec<Golden> {
    include_str!("golden.tsv")
        .lines()
        .map(|line| {
            let mut cols = line.splitn(3, '\t');
            let (Some(file), Some(uid), Some(quoted)) = (cols.next(), cols.next(), cols.next())
            else {
                panic!("golden.tsv line without three columns: {line}");
            };
            Golden {
                file: file.to_owned(),
                uid: uid.to_owned(),
                // Go's strconv.Quote of ASCII text is a JSON string.
                dump: serde_json::from_str(quoted).expect("golden dump is a quoted string"),
            }
        })
        .collect()
}

fn defaulted(file: &str) -> Pod {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src/source/spew/testdata")
        .join(file);
    let data = std::fs::read(&path).expect("testdata manifest");
    let Ok(Decoded::Pod(pod)) = decode(&data, false) else {
        panic!("{file} does not decode to a pod");
    };
    let mut pod = *pod;
    apply_api_defaults(&mut pod);
    pod
}

/// Where two dumps first differ, with some context, for a readable failure.
fn first_difference(ours: &str, upstream: &str) -> String {
    let at = ours
        .bytes()
        .zip(upstream.bytes())
        .position(|(a, b)| a != b)
        .unwrap_or(ours.len().min(upstream.len()));
    let from = at.saturating_sub(120);
    format!(
        "at byte {at}:\n  ours:     ...{}\n  upstream: ...{}",
        &ours[from..(at + 120).min(ours.len())],
        &upstream[from..(at + 120).min(upstream.len())]
    )
}

#[test]
fn every_testdata_manifest_has_a_golden_line() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/source/spew/testdata");
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .expect("testdata")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    let golden: Vec<String> = golden().into_iter().map(|g| g.file).collect();
    assert_eq!(
        files, golden,
        "regenerate golden.tsv (see xtask/golden/static_pod_uid)"
    );
}

#[test]
fn dumps_are_upstreams_byte_for_byte() {
    for g in golden() {
        let ours =
            dump_for_hash(&defaulted(&g.file)).unwrap_or_else(|e| panic!("{}: {}", g.file, e.0));
        assert!(
            ours == g.dump,
            "{}: dump differs {}",
            g.file,
            first_difference(&ours, &g.dump)
        );
    }
}

#[test]
fn static_pod_uids_are_upstreams() {
    for g in golden() {
        let origin = ManifestOrigin::File(Path::new(SOURCE_DIR).join(&g.file));
        let source = format!("host:{NODE}file:{SOURCE_DIR}/{}", g.file);
        assert_eq!(
            upstream_static_pod_uid(&defaulted(&g.file), &source).as_deref(),
            Ok(g.uid.as_str()),
            "{}",
            g.file
        );
        let pod = crate::source::prepare_static_pod(defaulted(&g.file), &origin, NODE)
            .expect("testdata pods are valid");
        assert_eq!(
            pod.metadata.uid.as_deref(),
            Some(g.uid.as_str()),
            "{}",
            g.file
        );
    }
}

#[test]
fn quantities_parse_as_apimachinery_does() {
    let q = |s: &str| parse_quantity(s).map(|q| (q.value, q.scale, q.s, q.format));
    assert_eq!(q("100m"), Ok((100, -3, "100m".into(), "DecimalSI")));
    assert_eq!(q("2000m"), Ok((2000, -3, String::new(), "DecimalSI")));
    assert_eq!(q("0.5"), Ok((5, -1, String::new(), "DecimalSI")));
    assert_eq!(q("1Gi"), Ok((1 << 30, 0, "1Gi".into(), "BinarySI")));
    assert_eq!(q("8Mi"), Ok((8 << 20, 0, String::new(), "BinarySI")));
    assert_eq!(q("1e3"), Ok((1, 3, "1e3".into(), "DecimalExponent")));
    assert_eq!(q("-5"), Ok((-5, 0, "-5".into(), "DecimalSI")));
    assert_eq!(q("0"), Ok((0, 0, "0".into(), "DecimalSI")));
    assert_eq!(q("000"), Ok((0, 0, String::new(), "DecimalSI")));
    assert!(parse_quantity("1n5").is_err());

    // The arbitrary-precision path: an inf.Dec rounded up to a nano.
    let dec = |s: &str| {
        parse_quantity(s).map(|q| {
            let d = q.dec.expect("an inf.Dec");
            (d.negative, d.unscaled, d.scale, q.format)
        })
    };
    assert_eq!(
        dec("1.5Gi"),
        Ok((false, 1_610_612_736_000_000_000, 9, "BinarySI"))
    );
    assert_eq!(
        dec("-1.5Gi"),
        Ok((true, 1_610_612_736_000_000_000, 9, "BinarySI"))
    );
    assert_eq!(dec("0.0000000001"), Ok((false, 1, 9, "DecimalSI")));
    assert_eq!(
        dec("12345678901234567890"),
        Ok((
            false,
            12_345_678_901_234_567_890_000_000_000,
            9,
            "DecimalSI"
        ))
    );
    // Binary: capped at MaxInt64, below one printed as decimal.
    assert_eq!(dec("100Ei"), Ok((false, i64::MAX as u128, 0, "BinarySI")));
    assert_eq!(dec("0.0001Ki"), Ok((false, 102_400_000, 9, "DecimalSI")));
    // A zero big.Int prints as its arithmetic left it; more than 128 bits is refused.
    assert!(parse_quantity("0.0Ki").is_err());
    assert!(parse_quantity(&"9".repeat(40)).is_err());

    let mut micro = parse_quantity("100u").expect("parses");
    micro.round_up_to_milli().expect("rounds");
    assert_eq!((micro.value, micro.scale, micro.s.as_str()), (1, -3, ""));
    let mut nano = parse_quantity("-1500000n").expect("parses");
    nano.round_up_to_milli().expect("rounds");
    assert_eq!((nano.value, nano.scale), (-2, -3));
    let mut big = parse_quantity("0.0000000001").expect("parses");
    big.round_up_to_milli().expect("rounds");
    assert_eq!(big.dec.map(|d| (d.unscaled, d.scale)), Some((1, 3)));
}

#[test]
fn fields_upstream_prints_by_its_go_internals_are_refused_not_guessed() {
    let mut pod = defaulted("web.yaml");
    pod.metadata.creation_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        jiff::Timestamp::UNIX_EPOCH,
    ));
    let err = dump_for_hash(&pod).expect_err("a set timestamp is refused");
    assert!(err.0.contains("v1.Time"), "{}", err.0);
}

#[test]
fn fnv_128a_is_gos() {
    // Go: fmt.Printf("%x", fnv.New128a().Sum(nil)) after writing "hello".
    let mut h = Fnv128a::new();
    h.write(b"hello");
    assert_eq!(format!("{:032x}", h.0), "e3e1efd54283d94f7081314b599d31b3");
}

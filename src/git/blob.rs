//! Facts about blobs (size, binary or text) read in bulk through one `git cat-file --batch`,
//! for review's flags and counts. Only reads objects; never writes, never runs a filter or a
//! diff driver.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::Stdio;

use anyhow::{Context, Result, bail};

use super::Git;

/// How many leading bytes git looks at to call a blob binary (a NUL among them).
pub const BINARY_PROBE: usize = 8000;

/// What review needs to know about one blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BlobFacts {
    /// Size in bytes (`None` when the object is missing or not a blob).
    pub size: Option<u64>,
    /// Binary as git decides it: a NUL in the first [`BINARY_PROBE`] bytes.
    pub binary: bool,
}

/// Is this the all-zero id git uses for "no object"?
fn is_null(oid: &str) -> bool {
    oid.bytes().all(|b| b == b'0')
}

impl Git {
    /// [`BlobFacts`] of each id in `oids` (duplicates and null ids are fine; a null, missing
    /// or non-blob id gets the default facts). One `git cat-file` for the lot.
    pub fn blob_facts<'a>(
        &self,
        oids: impl IntoIterator<Item = &'a str>,
    ) -> Result<HashMap<String, BlobFacts>> {
        let mut facts: HashMap<String, BlobFacts> = HashMap::new();
        let mut wanted: Vec<String> = Vec::new();
        for oid in oids {
            if facts.contains_key(oid) {
                continue;
            }
            facts.insert(oid.to_string(), BlobFacts::default());
            if !is_null(oid) {
                wanted.push(oid.to_string());
            }
        }
        if wanted.is_empty() {
            return Ok(facts);
        }
        let mut cmd = self.command();
        cmd.args(["cat-file", "--batch"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut child = cmd.spawn().context("could not run git cat-file")?;
        let mut stdin = child.stdin.take().expect("stdin was piped");
        let input: String = wanted.iter().map(|o| format!("{o}\n")).collect();
        // Write on a thread so a child that fills its stdout pipe cannot deadlock us.
        let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
        let mut out = BufReader::new(child.stdout.take().expect("stdout was piped"));
        let read = read_batch(&mut out, wanted.len());
        drop(out);
        let _ = writer.join();
        let status = child.wait().context("git cat-file did not finish")?;
        let read = read?;
        if !status.success() {
            bail!("git cat-file failed ({status})");
        }
        for (oid, f) in wanted.into_iter().zip(read) {
            facts.insert(oid, f);
        }
        Ok(facts)
    }
}

/// Read `count` answers of `git cat-file --batch`, keeping only each blob's size and whether
/// its first [`BINARY_PROBE`] bytes hold a NUL (the rest is read and dropped).
fn read_batch(out: &mut impl BufRead, count: usize) -> Result<Vec<BlobFacts>> {
    let mut facts = Vec::with_capacity(count);
    let mut header = String::new();
    let mut probe = vec![0u8; BINARY_PROBE];
    for _ in 0..count {
        header.clear();
        if out.read_line(&mut header)? == 0 {
            bail!("git cat-file stopped early");
        }
        // `<oid> <type> <size>`, or `<oid> missing` / `<oid> ambiguous`.
        let mut f = header.split_whitespace();
        let (_, kind, size) = (f.next(), f.next(), f.next());
        let Some(size) = size.and_then(|s| s.parse::<u64>().ok()) else {
            facts.push(BlobFacts::default());
            continue;
        };
        let head = (size as usize).min(BINARY_PROBE);
        out.read_exact(&mut probe[..head])?;
        let rest = size - head as u64;
        std::io::copy(&mut out.by_ref().take(rest), &mut std::io::sink())?;
        let mut newline = [0u8; 1];
        out.read_exact(&mut newline)?;
        facts.push(if kind == Some("blob") {
            BlobFacts {
                size: Some(size),
                binary: probe[..head].contains(&0),
            }
        } else {
            BlobFacts::default()
        });
    }
    Ok(facts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_answers_give_sizes_and_binary_from_the_first_bytes_only() {
        let mut late_nul = vec![b'a'; BINARY_PROBE];
        late_nul.push(0);
        let mut stream = Vec::new();
        stream.extend_from_slice(b"aaa blob 5\nhello\n");
        stream.extend_from_slice(b"bbb blob 3\nx\0y\n");
        stream.extend_from_slice(format!("ccc blob {}\n", late_nul.len()).as_bytes());
        stream.extend_from_slice(&late_nul);
        stream.push(b'\n');
        stream.extend_from_slice(b"ddd missing\n");
        stream.extend_from_slice(b"eee tree 0\n\n");
        let got = read_batch(&mut std::io::Cursor::new(stream), 5).unwrap();
        let blob = |size, binary| BlobFacts {
            size: Some(size),
            binary,
        };
        assert_eq!(
            got,
            vec![
                blob(5, false),
                blob(3, true),
                blob(BINARY_PROBE as u64 + 1, false),
                BlobFacts::default(),
                BlobFacts::default(),
            ]
        );
        assert!(read_batch(&mut std::io::Cursor::new(b"aaa blob 5\nhel"), 1).is_err());
    }

    #[test]
    fn facts_of_real_blobs_in_one_process() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        let run = |args: &[&str], input: &[u8]| {
            let mut cmd = std::process::Command::new("git");
            cmd.current_dir(d)
                .env("GIT_CONFIG_NOSYSTEM", "1")
                .args(args);
            let out = crate::git::output_of(&mut cmd, Some(input)).unwrap();
            String::from_utf8(out.stdout).unwrap().trim().to_string()
        };
        run(&["init", "-q"], b"");
        let text = run(&["hash-object", "-w", "--stdin"], b"text\n");
        let bin = run(&["hash-object", "-w", "--stdin"], b"\x00\x01");
        let g = Git::discover(d).unwrap();
        let zero = crate::git::ZERO_OID;
        let f = g
            .blob_facts([text.as_str(), bin.as_str(), zero, text.as_str()])
            .unwrap();
        assert_eq!(f.len(), 3);
        assert_eq!(
            f[&text],
            BlobFacts {
                size: Some(5),
                binary: false
            }
        );
        assert_eq!(
            f[&bin],
            BlobFacts {
                size: Some(2),
                binary: true
            }
        );
        assert_eq!(f[zero], BlobFacts::default());
    }
}

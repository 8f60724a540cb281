//! One pack of new objects, written in process: the re-created commits, their provenance
//! notes and the notes trees go into a single `.pack` with its `.idx` (version 2), written
//! with gix's object hashing and zlib, instead of one git process per object or a
//! `git fast-import` stream.
//!
//! A pack is what git itself writes for many objects at once: two files to move into the
//! user's repository (see `recreate::Quarantine::migrate`) instead of one file per object.
//! Objects are stored whole (no deltas): commits, note blobs and notes trees are small, and
//! writing them is then a hash and a fast deflate each. This module writes only into the
//! directory it is given (the quarantine's); it never touches refs and never starts git.

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use gix::ObjectId;
use gix::hash::Kind as HashKind;
use gix::objs::Kind;
use gix::zlib::Status;
use gix::zlib::stream::deflate::{Compress, FlushCompress};

/// Objects on their way into one pack.
pub struct PackWriter {
    hash: HashKind,
    /// Every entry after the 12-byte header, in order.
    body: Vec<u8>,
    /// `(id, offset in the pack, crc32 of the entry)` per object.
    entries: Vec<(ObjectId, u64, u32)>,
    seen: HashSet<ObjectId>,
    /// One zlib stream, reset for each object.
    z: Compress,
    /// Reused output buffer of the compressor.
    out: Vec<u8>,
}

/// Size of the pack header (`PACK`, version, object count).
const HEADER: u64 = 12;

impl PackWriter {
    pub fn new(hash: HashKind) -> PackWriter {
        PackWriter {
            hash,
            body: Vec::new(),
            entries: Vec::new(),
            seen: HashSet::new(),
            z: Compress::new(gix::zlib::Compression::BEST_SPEED),
            out: Vec::new(),
        }
    }

    /// Add one object; its id. An object added before is not added again.
    pub fn add(&mut self, kind: Kind, data: &[u8]) -> Result<ObjectId> {
        let id = gix::objs::compute_hash(self.hash, kind, data)
            .context("cannot hash a re-created object")?;
        if !self.seen.insert(id) {
            return Ok(id);
        }
        let offset = HEADER + self.body.len() as u64;
        let start = self.body.len();
        entry_header(&mut self.body, kind, data.len() as u64);
        self.deflate(data)?;
        let crc = crc32fast::hash(&self.body[start..]);
        self.entries.push((id, offset, crc));
        Ok(id)
    }

    /// Append `data` to the pack as one zlib stream.
    fn deflate(&mut self, data: &[u8]) -> Result<()> {
        self.z.reset();
        let want = data.len() + data.len() / 2 + 256;
        if self.out.len() < want {
            self.out.resize(want, 0);
        }
        let mut consumed = 0;
        loop {
            let (before_in, before_out) = (self.z.total_in(), self.z.total_out());
            let status = self
                .z
                .compress(&data[consumed..], &mut self.out, FlushCompress::Finish)
                .map_err(|e| anyhow::anyhow!("cannot compress an object: {e}"))?;
            let read = (self.z.total_in() - before_in) as usize;
            consumed += read;
            let wrote = (self.z.total_out() - before_out) as usize;
            self.body.extend_from_slice(&self.out[..wrote]);
            match status {
                Status::StreamEnd => return Ok(()),
                _ if wrote == 0 && read == 0 => {
                    bail!("the compressor made no progress")
                }
                _ => {}
            }
        }
    }

    /// Write `pack-<checksum>.pack` and then its `.idx` into `dir`; their paths, or `None`
    /// when no object was added.
    pub fn finish(self, dir: &Path) -> Result<Option<(PathBuf, PathBuf)>> {
        if self.entries.is_empty() {
            return Ok(None);
        }
        let count = u32::try_from(self.entries.len()).context("too many objects for one pack")?;
        let mut header = Vec::with_capacity(HEADER as usize);
        header.extend_from_slice(b"PACK");
        header.extend_from_slice(&2u32.to_be_bytes());
        header.extend_from_slice(&count.to_be_bytes());
        let mut h = gix::hash::hasher(self.hash);
        h.update(&header);
        h.update(&self.body);
        let checksum = h.try_finalize().context("cannot checksum the pack")?;
        let name = format!("pack-{}", checksum.to_hex());
        let pack = dir.join(format!("{name}.pack"));
        let idx = dir.join(format!("{name}.idx"));
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        write_file(&pack, &[&header, &self.body, checksum.as_slice()])?;
        let index = index_v2(self.hash, self.entries, &checksum)?;
        write_file(&idx, &[&index])?;
        Ok(Some((pack, idx)))
    }
}

/// A pack entry's header: type and size, 4 bits then 7 bits a byte, low bits first.
fn entry_header(out: &mut Vec<u8>, kind: Kind, size: u64) {
    let kind = match kind {
        Kind::Commit => 1u8,
        Kind::Tree => 2,
        Kind::Blob => 3,
        Kind::Tag => 4,
    };
    let mut byte = (kind << 4) | (size & 0x0f) as u8;
    let mut rest = size >> 4;
    while rest != 0 {
        out.push(byte | 0x80);
        byte = (rest & 0x7f) as u8;
        rest >>= 7;
    }
    out.push(byte);
}

/// The `.idx` (version 2) of a pack: fan-out, sorted ids, CRCs, offsets, checksums.
fn index_v2(
    hash: HashKind,
    mut entries: Vec<(ObjectId, u64, u32)>,
    pack_checksum: &ObjectId,
) -> Result<Vec<u8>> {
    entries.sort_by_key(|e| e.0);
    let len = hash.len_in_bytes();
    let mut out = Vec::with_capacity(8 + 1024 + entries.len() * (len + 8) + 2 * len);
    out.extend_from_slice(b"\xfftOc");
    out.extend_from_slice(&2u32.to_be_bytes());
    let mut fanout = [0u32; 256];
    for (id, _, _) in &entries {
        fanout[id.as_slice()[0] as usize] += 1;
    }
    let mut total = 0u32;
    for n in fanout {
        total += n;
        out.extend_from_slice(&total.to_be_bytes());
    }
    for (id, _, _) in &entries {
        out.extend_from_slice(id.as_slice());
    }
    for (_, _, crc) in &entries {
        out.extend_from_slice(&crc.to_be_bytes());
    }
    let mut large = Vec::new();
    for (_, offset, _) in &entries {
        if *offset < 0x8000_0000 {
            out.extend_from_slice(&(*offset as u32).to_be_bytes());
        } else {
            let i = u32::try_from(large.len()).context("pack too large")?;
            out.extend_from_slice(&(0x8000_0000 | i).to_be_bytes());
            large.push(*offset);
        }
    }
    for offset in large {
        out.extend_from_slice(&offset.to_be_bytes());
    }
    out.extend_from_slice(pack_checksum.as_slice());
    let mut h = gix::hash::hasher(hash);
    h.update(&out);
    let own = h.try_finalize().context("cannot checksum the pack index")?;
    out.extend_from_slice(own.as_slice());
    Ok(out)
}

/// Write `parts` to `path` through a temporary name, durably, read-only as git keeps packs.
fn write_file(path: &Path, parts: &[&[u8]]) -> Result<()> {
    let dir = path.parent().expect("a pack directory");
    let mut tmp = tempfile::Builder::new()
        .prefix("tmp_pack_")
        .tempfile_in(dir)
        .with_context(|| format!("cannot write into {}", dir.display()))?;
    for p in parts {
        tmp.write_all(p)?;
    }
    tmp.as_file().sync_data()?;
    let mut perms = tmp.as_file().metadata()?.permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o444);
    tmp.as_file().set_permissions(perms)?;
    if path.exists() {
        bail!("{} exists already", path.display());
    }
    tmp.persist(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn git(dir: &Path, args: &[&str]) -> std::process::Output {
        let out = Command::new("git")
            .current_dir(dir)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("HOME", dir)
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {out:?}");
        out
    }

    /// git reads the pack and its index as its own: `verify-pack` checks every checksum and
    /// CRC, `cat-file` finds each object (including one larger than a one-byte size header
    /// holds), and the ids are git's.
    #[test]
    fn git_reads_the_pack_it_writes() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        git(d, &["init", "-q", "--bare"]);
        let mut w = PackWriter::new(HashKind::Sha1);
        let big = "x".repeat(100_000);
        let blob = w.add(Kind::Blob, big.as_bytes()).unwrap();
        let small = w.add(Kind::Blob, b"hi\n").unwrap();
        assert_eq!(w.add(Kind::Blob, b"hi\n").unwrap(), small, "added once");
        let mut tree = b"100644 a\0".to_vec();
        tree.extend_from_slice(small.as_slice());
        let tree = w.add(Kind::Tree, &tree).unwrap();
        let commit = format!(
            "tree {tree}\nauthor A <a@b> 1700000000 +0000\ncommitter A <a@b> 1700000000 +0000\n\nm\n"
        );
        let commit = w.add(Kind::Commit, commit.as_bytes()).unwrap();
        let (pack, idx) = w.finish(&d.join("objects/pack")).unwrap().unwrap();
        assert!(idx.exists());
        let out = git(d, &["verify-pack", "-v", pack.to_str().unwrap()]);
        assert!(String::from_utf8_lossy(&out.stdout).contains("non delta: 4 objects"));
        let hash = |t: &str, data: &[u8]| {
            let mut c = Command::new("git")
                .args(["hash-object", "--stdin", "-t", t])
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            c.stdin.take().unwrap().write_all(data).unwrap();
            String::from_utf8(c.wait_with_output().unwrap().stdout).unwrap()
        };
        assert_eq!(hash("blob", big.as_bytes()).trim(), blob.to_string());
        let shown = git(d, &["cat-file", "-p", &commit.to_string()]);
        assert!(String::from_utf8_lossy(&shown.stdout).starts_with(&format!("tree {tree}")));
        let size = git(d, &["cat-file", "-s", &blob.to_string()]);
        assert_eq!(String::from_utf8_lossy(&size.stdout).trim(), "100000");
        git(d, &["fsck", "--strict", "--no-dangling"]);
        assert!(
            PackWriter::new(HashKind::Sha1)
                .finish(&d.join("objects/pack"))
                .unwrap()
                .is_none()
        );
    }
}

//! The notes tree of `refs/notes/agent` after a promotion: the notes already there plus one
//! note per re-created commit, as trees written into a [`PackWriter`].
//!
//! Notes are laid out as `git fast-import` lays them out: flat below 256 notes, one level of
//! two-hex-digit directories below 65,536, two levels beyond (git reads any layout). Entries
//! of the old notes tree that are not notes are kept at their paths. The old tree is read
//! with one `git ls-tree -r`; this module never writes refs.

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};
use gix::ObjectId;
use gix::objs::Kind;

use super::pack::PackWriter;
use crate::git::Git;

/// A tree entry's mode as git writes it in a tree (`100644`, `40000`, ...).
type Mode = Vec<u8>;
/// Notes: annotated object → note blob.
pub type Notes = BTreeMap<ObjectId, ObjectId>;
/// Entries of a notes tree that are not notes: path → (mode, id).
pub type Other = BTreeMap<Vec<u8>, (Mode, ObjectId)>;
/// An entry to write, named by its path below the tree being written.
type Item = (Vec<u8>, Mode, ObjectId);

const TREE: &[u8] = b"40000";
const NOTE: &[u8] = b"100644";

/// Every note of the notes commit `commit` (annotated object → note blob), and the entries
/// that are not notes (`path → (mode, id)`).
pub fn read(git: &Git, commit: &str) -> Result<(Notes, Other)> {
    let mut cmd = git.command();
    cmd.args(["ls-tree", "-r", "-z", "--full-tree", "--end-of-options"])
        .arg(format!("{commit}^{{tree}}"));
    let out = crate::git::output_of(&mut cmd, None).context("cannot read the notes")?;
    let mut notes = BTreeMap::new();
    let mut other = BTreeMap::new();
    for rec in out.stdout.split(|b| *b == 0).filter(|r| !r.is_empty()) {
        // `<mode> SP <type> SP <id> TAB <path>`
        let tab = rec
            .iter()
            .position(|b| *b == b'\t')
            .context("unexpected git ls-tree output")?;
        let (meta, path) = (&rec[..tab], &rec[tab + 1..]);
        let mut f = meta.split(|b| *b == b' ');
        let (Some(mode), Some(_), Some(id), None) = (f.next(), f.next(), f.next(), f.next()) else {
            bail!("unexpected git ls-tree output");
        };
        if mode.is_empty() || !mode.iter().all(|b| (b'0'..=b'7').contains(b)) {
            bail!("unexpected git ls-tree output");
        }
        let id = ObjectId::from_hex(id).context("unexpected git ls-tree output")?;
        let mode = mode
            .iter()
            .skip_while(|b| **b == b'0')
            .copied()
            .collect::<Vec<_>>();
        match note_target(path, id.kind()) {
            Some(target) if mode == NOTE => {
                notes.insert(target, id);
            }
            _ => {
                other.insert(path.to_vec(), (mode, id));
            }
        }
    }
    Ok((notes, other))
}

/// The object a notes-tree path annotates: the path is its id in hex, split into
/// two-digit directories before the last component.
fn note_target(path: &[u8], kind: gix::hash::Kind) -> Option<ObjectId> {
    let parts: Vec<&[u8]> = path.split(|b| *b == b'/').collect();
    let (last, dirs) = parts.split_last()?;
    if dirs.iter().any(|d| d.len() != 2) || last.is_empty() {
        return None;
    }
    let hex: Vec<u8> = parts.concat();
    if hex.len() != kind.len_in_hex() {
        return None;
    }
    ObjectId::from_hex(&hex).ok()
}

/// Directory levels of a notes tree holding `n` notes (as `git fast-import` chooses).
fn fanout(mut n: usize) -> usize {
    let mut f = 0;
    while {
        n >>= 8;
        n != 0
    } {
        f += 1;
    }
    f
}

/// Write the notes tree holding `notes` and `other` entries into `pack`; its id.
pub fn write_tree(pack: &mut PackWriter, notes: &Notes, other: &Other) -> Result<ObjectId> {
    let levels = fanout(notes.len());
    let mut items: Vec<Item> = Vec::with_capacity(notes.len() + other.len());
    for (target, blob) in notes {
        let hex = target.to_string().into_bytes();
        let mut path = Vec::with_capacity(hex.len() + levels);
        for l in 0..levels {
            path.extend_from_slice(&hex[2 * l..2 * l + 2]);
            path.push(b'/');
        }
        path.extend_from_slice(&hex[2 * levels..]);
        items.push((path, NOTE.to_vec(), *blob));
    }
    for (path, (mode, id)) in other {
        items.push((path.clone(), mode.clone(), *id));
    }
    tree(pack, items)
}

/// One tree (and its subtrees) from entries named by their paths below it.
fn tree(pack: &mut PackWriter, items: Vec<Item>) -> Result<ObjectId> {
    let mut direct: Vec<Item> = Vec::new();
    let mut dirs: BTreeMap<Vec<u8>, Vec<Item>> = BTreeMap::new();
    for (path, mode, id) in items {
        match path.iter().position(|b| *b == b'/') {
            Some(i) => {
                dirs.entry(path[..i].to_vec())
                    .or_default()
                    .push((path[i + 1..].to_vec(), mode, id))
            }
            None => direct.push((path, mode, id)),
        }
    }
    for (name, sub) in dirs {
        let id = tree(pack, sub)?;
        direct.push((name, TREE.to_vec(), id));
    }
    // git's order: by name, a directory's name compared as if it ended in '/'.
    let key = |(name, mode, _): &Item| {
        let mut k = name.clone();
        if mode == TREE {
            k.push(b'/');
        }
        k
    };
    direct.sort_by_cached_key(key);
    let mut bytes = Vec::with_capacity(direct.len() * 64);
    let mut previous: Option<&[u8]> = None;
    for (name, mode, id) in &direct {
        if name.is_empty() || previous == Some(name.as_slice()) {
            bail!("the notes in refs/notes/agent hold an entry twice or an empty name");
        }
        previous = Some(name);
        bytes.extend_from_slice(mode);
        bytes.push(b' ');
        bytes.extend_from_slice(name);
        bytes.push(0);
        bytes.extend_from_slice(id.as_slice());
    }
    pack.add(Kind::Tree, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fanout_follows_fast_import() {
        assert_eq!(fanout(0), 0);
        assert_eq!(fanout(255), 0);
        assert_eq!(fanout(256), 1);
        assert_eq!(fanout(65_535), 1);
        assert_eq!(fanout(65_536), 2);
    }

    #[test]
    fn only_hex_paths_split_in_pairs_are_notes() {
        let k = gix::hash::Kind::Sha1;
        let id = "0123456789abcdef0123456789abcdef01234567";
        assert!(note_target(id.as_bytes(), k).is_some());
        assert!(note_target(format!("01/{}", &id[2..]).as_bytes(), k).is_some());
        assert!(note_target(format!("01/23/{}", &id[4..]).as_bytes(), k).is_some());
        assert!(note_target(format!("012/{}", &id[3..]).as_bytes(), k).is_none());
        assert!(note_target(b"README", k).is_none());
        assert!(note_target(format!("{id}/").as_bytes(), k).is_none());
    }
}

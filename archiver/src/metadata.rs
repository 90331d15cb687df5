//! Filesystem metadata <-> tree nodes.

use std::collections::HashMap;
use std::ffi::{CStr, CString, OsStr};
use std::fs::Metadata;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use arch_repository::{Node, NodeKind, Timestamp, Xattr};
use parking_lot::Mutex;

/// Builds a node (without content or subtree) from lstat metadata.
pub(crate) fn node_from_metadata(name: &OsStr, md: &Metadata, names: &NameCache) -> Node {
    let ft = md.file_type();
    let kind = if ft.is_file() {
        NodeKind::File
    } else if ft.is_dir() {
        NodeKind::Dir
    } else if ft.is_symlink() {
        NodeKind::Symlink
    } else if ft.is_fifo() {
        NodeKind::Fifo
    } else if ft.is_socket() {
        NodeKind::Socket
    } else if ft.is_char_device() {
        NodeKind::Chardev
    } else {
        NodeKind::Blockdev
    };
    let mut n = Node::new(name.as_bytes().to_vec(), kind);
    n.mode = md.mode() & 0o7777;
    n.uid = md.uid();
    n.gid = md.gid();
    n.user = names.user(md.uid());
    n.group = names.group(md.gid());
    n.mtime = Timestamp(md.mtime(), md.mtime_nsec() as u32);
    n.atime = Timestamp(md.atime(), md.atime_nsec() as u32);
    n.ctime = Timestamp(md.ctime(), md.ctime_nsec() as u32);
    n.inode = md.ino();
    n.device = md.dev();
    n.links = md.nlink();
    if kind == NodeKind::File {
        n.size = md.len();
    }
    if matches!(kind, NodeKind::Chardev | NodeKind::Blockdev) {
        n.rdev = md.rdev();
    }
    n
}

/// Caches uid/gid -> name lookups (one libc call per distinct id).
#[derive(Default)]
pub(crate) struct NameCache {
    users: Mutex<HashMap<u32, String>>,
    groups: Mutex<HashMap<u32, String>>,
}

impl NameCache {
    fn user(&self, uid: u32) -> String {
        self.users.lock().entry(uid).or_insert_with(|| lookup_user(uid)).clone()
    }
    fn group(&self, gid: u32) -> String {
        self.groups.lock().entry(gid).or_insert_with(|| lookup_group(gid)).clone()
    }
}

fn lookup_user(uid: u32) -> String {
    let mut buf = vec![0u8; 4096];
    // SAFETY: pwd and result are written by getpwuid_r; buf outlives the
    // use of pw_name, which we copy before returning.
    unsafe {
        let mut pwd: libc::passwd = std::mem::zeroed();
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        let rc = libc::getpwuid_r(uid, &mut pwd, buf.as_mut_ptr().cast(), buf.len(), &mut result);
        if rc != 0 || result.is_null() || pwd.pw_name.is_null() {
            return String::new();
        }
        CStr::from_ptr(pwd.pw_name).to_string_lossy().into_owned()
    }
}

fn lookup_group(gid: u32) -> String {
    let mut buf = vec![0u8; 4096];
    // SAFETY: as in lookup_user.
    unsafe {
        let mut grp: libc::group = std::mem::zeroed();
        let mut result: *mut libc::group = std::ptr::null_mut();
        let rc = libc::getgrgid_r(gid, &mut grp, buf.as_mut_ptr().cast(), buf.len(), &mut result);
        if rc != 0 || result.is_null() || grp.gr_name.is_null() {
            return String::new();
        }
        CStr::from_ptr(grp.gr_name).to_string_lossy().into_owned()
    }
}

fn cpath(p: &Path) -> Option<CString> {
    CString::new(p.as_os_str().as_bytes()).ok()
}

/// Extended attributes of `path` (not following symlinks), sorted by name.
/// Filesystems without xattr support yield an empty list.
pub(crate) fn read_xattrs(path: &Path) -> Vec<Xattr> {
    let Some(c) = cpath(path) else {
        return Vec::new();
    };
    let mut names = vec![0u8; 1024];
    let len = loop {
        // SAFETY: names is valid for names.len() bytes.
        let n = unsafe { libc::llistxattr(c.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
        if n >= 0 {
            break n as usize;
        }
        if std::io::Error::last_os_error().raw_os_error() == Some(libc::ERANGE) && names.len() < 1 << 20 {
            names.resize(names.len() * 4, 0);
            continue;
        }
        return Vec::new();
    };
    let mut out = Vec::new();
    for name in names[..len].split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let Ok(cname) = CString::new(name) else {
            continue;
        };
        let mut value = vec![0u8; 256];
        loop {
            // SAFETY: value is valid for value.len() bytes.
            let n = unsafe {
                libc::lgetxattr(c.as_ptr(), cname.as_ptr(), value.as_mut_ptr().cast(), value.len())
            };
            if n >= 0 {
                value.truncate(n as usize);
                out.push(Xattr { name: name.to_vec(), value });
                break;
            }
            if std::io::Error::last_os_error().raw_os_error() == Some(libc::ERANGE) && value.len() < 1 << 24 {
                value.resize(value.len() * 4, 0);
                continue;
            }
            break;
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// Sets one extended attribute on `path` (not following symlinks).
pub(crate) fn write_xattr(path: &Path, x: &Xattr) -> std::io::Result<()> {
    let c = cpath(path).ok_or_else(|| std::io::Error::other("path contains NUL"))?;
    let name = CString::new(x.name.clone()).map_err(|_| std::io::Error::other("xattr name contains NUL"))?;
    // SAFETY: all pointers are valid for the given lengths.
    let rc = unsafe { libc::lsetxattr(c.as_ptr(), name.as_ptr(), x.value.as_ptr().cast(), x.value.len(), 0) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

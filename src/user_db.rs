//! User and group names, looked up in the image's `/etc/passwd` and
//! `/etc/group` directly, never through NSS: a static binary has none, and
//! the image's files are all there is. Used for `BTSYNC_UID`/`BTSYNC_GID`
//! and for a namespace's `--owner`.

use std::fs;
use std::path::Path;

use crate::settings::Owner;

/// Where names are looked up (`passwd`, `group`); the image ships both.
pub const USER_DB_DIR: &str = "/etc";
/// A user database is a few lines; reading stops past this.
const MAX_USER_DB_BYTES: u64 = 1024 * 1024;

/// The problem with a name or id, as words to put after what was given.
pub type Problem = String;

fn numeric_id(text: &str) -> Option<u32> {
    let trimmed = text.trim();
    match trimmed.parse::<u32>() {
        Ok(id) if id != u32::MAX && trimmed.bytes().all(|b| b.is_ascii_digit()) => Some(id),
        _ => None,
    }
}

/// A numeric uid (its group defaults to the same number), or a user name
/// from `passwd` (its group defaults to the user's primary group).
pub fn user_id(text: &str, passwd: &Path) -> Result<(u32, u32), Problem> {
    if let Some(uid) = numeric_id(text) {
        return Ok((uid, uid));
    }
    let fields = lookup_name(text, passwd)?;
    match (
        fields.get(2).and_then(|f| numeric_id(f)),
        fields.get(3).and_then(|f| numeric_id(f)),
    ) {
        (Some(uid), Some(gid)) => Ok((uid, gid)),
        _ => Err(format!(
            "the line of {text:?} in {} is malformed",
            passwd.display()
        )),
    }
}

/// A numeric gid or a group name from `group`.
pub fn group_id(text: &str, group: &Path) -> Result<u32, Problem> {
    if let Some(gid) = numeric_id(text) {
        return Ok(gid);
    }
    let fields = lookup_name(text, group)?;
    fields
        .get(2)
        .and_then(|f| numeric_id(f))
        .ok_or_else(|| format!("the line of {text:?} in {} is malformed", group.display()))
}

/// `USER[:GROUP]`, each a name or a number, looked up in `user_db`: the
/// form of `chown` and of `docker run --user`.
pub fn owner(text: &str, user_db: &Path) -> Result<Owner, Problem> {
    let (user, group) = match text.split_once(':') {
        Some((user, group)) => (user, Some(group)),
        None => (text, None),
    };
    if user.is_empty() {
        return Err(format!("{text:?} names no user (the form is USER[:GROUP])"));
    }
    let (uid, primary) = user_id(user, &user_db.join("passwd"))?;
    let gid = match group {
        Some(group) => group_id(group, &user_db.join("group"))?,
        None => primary,
    };
    Ok(Owner { uid, gid })
}

/// The `:`-separated fields of `name`'s line in a passwd-format file.
fn lookup_name(name: &str, file: &Path) -> Result<Vec<String>, Problem> {
    use std::io::Read;
    let unknown = |why: String| format!("{name:?} is neither a numeric id nor {why}");
    let mut text = String::new();
    fs::File::open(file)
        .and_then(|f| f.take(MAX_USER_DB_BYTES).read_to_string(&mut text))
        .map_err(|e| {
            unknown(format!(
                "a name that can be looked up ({}: {e})",
                file.display()
            ))
        })?;
    let valid_name = !name.is_empty() && !name.contains([':', '\n']);
    text.lines()
        .filter(|_| valid_name)
        .map(|line| line.split(':').map(str::to_owned).collect::<Vec<_>>())
        .find(|fields| fields.first().is_some_and(|f| f == name))
        .ok_or_else(|| unknown(format!("a name in {}", file.display())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn image_etc() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("rootfs/etc")
    }

    #[test]
    fn owners_in_the_forms_of_chown() {
        let db = image_etc();
        let o = |t: &str| owner(t, &db);
        assert_eq!(o("70"), Ok(Owner { uid: 70, gid: 70 }));
        assert_eq!(o("70:80"), Ok(Owner { uid: 70, gid: 80 }));
        assert_eq!(
            o("btsync"),
            Ok(Owner {
                uid: 1000,
                gid: 1000
            })
        );
        assert_eq!(o("nobody:root"), Ok(Owner { uid: 65534, gid: 0 }));
        for bad in [
            "",
            ":0",
            "70:",
            "postgres",
            "-1",
            "4294967295",
            "a:b:c",
            "7 0",
        ] {
            assert!(o(bad).is_err(), "{bad:?} accepted");
        }
    }
}

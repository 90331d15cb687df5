//! The `--json` outputs no other test parses: init, tag, copy, prune and
//! unlock each print one JSON object with the documented fields.

use std::fs;

use crate::common::*;

fn json(env: &ArchEnv, a: &[&dyn AsRef<std::ffi::OsStr>]) -> serde_json::Value {
    let r = env.run(&args(a));
    r.ok(&format!("{:?}", args(a)));
    let last = r.stdout.lines().rfind(|l| !l.trim().is_empty()).unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|e| panic!("{:?} printed no JSON ({e}): {}", args(a), r.stdout))
}

#[test]
fn init_tag_copy_prune_and_unlock_print_json() {
    let (_t, base) = tempdir();
    let env = ArchEnv::new(&base);
    let (src, repo, other) = (base.join("src"), base.join("repo"), base.join("other"));
    fs::create_dir(&src).unwrap();
    fs::write(src.join("a.txt"), b"some content\n").unwrap();
    let (r, o) = (&repo, &other);

    let init = json(&env, &[&"--json", &"--repo", r, &"init"]);
    assert_eq!(init["id"].as_str().map(str::len), Some(64), "{init}");
    assert!(init["repository"].as_str().is_some_and(|p| p.ends_with("/repo")), "{init}");
    let backup = json(&env, &[&"--json", &"--repo", r, &"backup", &src]);
    let id = backup["snapshot_id"].as_str().unwrap().to_string();

    let tag = json(&env, &[&"--json", &"--repo", r, &"tag", &id, &"--add", &"x"]);
    assert_eq!(tag["message_type"], "summary");
    assert_eq!(tag["matched"], 1);
    assert_eq!(tag["changed"][0]["old_id"], id.as_str());
    assert_eq!(tag["changed"][0]["tags"], serde_json::json!(["x"]));
    let new_id = tag["changed"][0]["new_id"].as_str().unwrap().to_string();

    json(&env, &[&"--repo", o, &"--json", &"init"]);
    let pw = base.join("pw");
    fs::write(&pw, PASSWORD).unwrap();
    let copy =
        json(&env, &[&"--json", &"--repo", o, &"copy", &"--from-repo", r, &"--from-password-file", &pw]);
    assert_eq!(copy["message_type"], "summary");
    assert_eq!(copy["copied"][0]["source"], new_id.as_str(), "{copy}");
    assert!(copy["blobs_copied"].as_u64().unwrap() >= 2, "{copy}");
    assert_eq!(copy["chunker_differs"], true, "two inits, two chunker seeds");

    let prune = json(&env, &[&"--json", &"--repo", r, &"prune"]);
    assert_eq!(prune["message_type"], "summary");
    assert_eq!(prune["dry_run"], false);
    assert!(prune["packs"].as_u64().is_some(), "{prune}");

    let unlock = json(&env, &[&"--json", &"--repo", r, &"unlock"]);
    assert_eq!(unlock["message_type"], "summary");
    assert_eq!(unlock["removed"], 0);
}

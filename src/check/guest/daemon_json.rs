//! guest.daemon-json (CFG-1): an unknown key or a wrong value in /etc/docker/daemon.json
//! stops Docker at its next restart ("the following directives don't match any configuration
//! option"). Docker 23+ validates the file itself (`dockerd --validate`); for older engines the
//! check can only say when the file changed after the running daemon read it.

use crate::check::{Finding, Fix, GuestCheck, GuestVerdict, GuestView, Verdict};

const ID: &str = "guest.daemon-json";

pub const CHECK: GuestCheck = GuestCheck {
    id: ID,
    reads: "/etc/docker/daemon.json (SFTP), `dockerd --validate --config-file` (Docker 23+), its mtime against dockerd's start time",
    verdict: GuestVerdict::Facts(verdict),
};

fn verdict(view: &GuestView) -> Vec<Finding> {
    let who = view.subject.clone();
    let script = match &view.snapshot.script {
        Ok(s) => s,
        Err(why) => return vec![Finding::skipped(ID, who, why.message())],
    };
    if let Ok(state) = &view.snapshot.docker {
        match &state.daemon_json {
            None => {
                return vec![Finding::new(
                    ID,
                    who,
                    Verdict::Ok,
                    "no daemon.json: Docker runs on its defaults".into(),
                )]
            }
            Some(Err(why)) => {
                return vec![Finding::new(
                    ID,
                    who,
                    Verdict::Fail,
                    format!(
                        "/etc/docker/daemon.json is {why}: Docker will not start after a restart"
                    ),
                )
                .with_fix(Fix::manual(
                    "fix the JSON, or let `strata engine install VM` rewrite it",
                ))]
            }
            Some(Ok(_)) => {}
        }
    }
    match &script.daemon_json_valid {
        Some(Err(said)) => vec![Finding::new(ID, who, Verdict::Fail, "dockerd rejects /etc/docker/daemon.json: Docker will not start after a restart".into())
            .evidence([said.clone()])
            .with_fix(Fix::manual("remove or correct the keys dockerd names"))],
        Some(Ok(())) => vec![Finding::new(ID, who, Verdict::Ok, "dockerd --validate accepts daemon.json".into())],
        None if script.daemon_json_newer_than_dockerd => vec![Finding::new(
            ID,
            who,
            Verdict::Warn,
            "daemon.json changed after dockerd started and this engine cannot validate it (Docker < 23): a bad key stops Docker at its next restart".into(),
        )
        .with_fix(Fix::manual("restart Docker now, while you are watching (`systemctl restart docker` in the guest), or validate with a Docker 23+ dockerd"))],
        None => vec![Finding::new(ID, who, Verdict::Ok, "the running dockerd started with the current daemon.json".into())],
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_facts::*;
    use super::*;

    #[test]
    fn verdicts() {
        let mut f = guest_facts();
        assert_eq!(judge(&CHECK, &f)[0].verdict, Verdict::Ok);
        f.script.as_mut().unwrap().daemon_json_newer_than_dockerd = true;
        assert_eq!(judge(&CHECK, &f)[0].verdict, Verdict::Warn);
        f.script.as_mut().unwrap().daemon_json_valid = Some(Err("unknown key bogus".into()));
        assert_eq!(judge(&CHECK, &f)[0].verdict, Verdict::Fail);
        docker_mut(&mut f).daemon_json = Some(Err(crate::error::Error::failed("not JSON: EOF")));
        assert!(judge(&CHECK, &f)[0].summary.contains("not JSON"));
    }
}

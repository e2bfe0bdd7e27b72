//! `template build`, composed: the image layer's pipeline (debootstrap, customise, mke2fs,
//! qcow2, register), with Docker baked into the root filesystem by the engine layer when the
//! template asks for it ([build.engine]), so that clones boot with Docker as `engine install`
//! would have made it.

use crate::engine::bake::Bake;
use crate::error::Result;
use crate::image::{self, BuildOutcome, RootfsStep};
use crate::progress::Progress;
use crate::state::Paths;
use crate::template::Template;
use crate::vm::Libvirt;

/// Build `template` (a no-op when nothing changed; `refresh` fetches current packages).
pub fn build(
    lv: &Libvirt,
    paths: &Paths,
    template: &Template,
    refresh: bool,
    progress: &Progress,
) -> Result<BuildOutcome> {
    let recipe = template.manifest.build.as_ref();
    let bake = recipe.and_then(|r| {
        r.engine.as_ref().map(|spec| Bake {
            paths,
            suite: &r.suite,
            spec,
        })
    });
    let extra = bake.as_ref().map(|b| b as &dyn RootfsStep);
    image::build(lv, paths, template, refresh, extra, progress)
}

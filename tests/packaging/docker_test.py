#!/usr/bin/env python3
"""The Dockerfile and docker-compose.yml agree with what the build installs.

No docker engine runs the tests, so this checks what can go stale without one:
  - every path the runtime stage copies from /staging is in the install
    manifest (this build installed with DESTDIR, prefix /usr, as the image does);
  - every file it copies from the build context exists and is not in
    .dockerignore;
  - the runtime stage's packages provide every shared library the installed
    programs load (beyond the base image's libc, libstdc++, libgcc);
  - otpd is PID 1 (exec-form CMD, no ENTRYPOINT), the user is not root, the
    HEALTHCHECK asks otpctl status, OTPD_RUNTIME_DIR is set;
  - docker-compose.yml parses and builds this Dockerfile.

usage: docker_test.py SOURCE_DIR BUILD_DIR   (exit 77: skipped)
"""
import fnmatch
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile

SKIP = 77
BASE_IMAGE_PACKAGES = {"libc6", "libstdc++6", "libgcc-s1"}

failures = []


def fail(msg):
    failures.append(msg)
    print("FAIL: " + msg, file=sys.stderr)


def logical_lines(path):
    """Dockerfile instructions, continuation lines joined, comments dropped."""
    out, cur = [], ""
    with open(path) as f:
        for raw in f:
            line = raw.rstrip("\n")
            if not cur and (not line.strip() or line.lstrip().startswith("#")):
                continue
            if line.rstrip().endswith("\\"):
                cur += line.rstrip()[:-1] + " "
                continue
            out.append((cur + line).strip())
            cur = ""
    return out


def final_stage(lines):
    starts = [i for i, l in enumerate(lines) if l.upper().startswith("FROM ")]
    return [l.split()[1] for l in (lines[i] for i in starts)], lines[starts[-1]:]


def install_manifest(build_dir, stage):
    env = dict(os.environ, DESTDIR=stage)
    r = subprocess.run(["cmake", "--install", build_dir, "--prefix", "/usr"], env=env,
                       capture_output=True, text=True)
    if r.returncode != 0:
        print(r.stdout + r.stderr, file=sys.stderr)
        sys.exit("cmake --install failed")


def configured_prefix(build_dir):
    with open(os.path.join(build_dir, "CMakeCache.txt")) as f:
        for line in f:
            if line.startswith("CMAKE_INSTALL_PREFIX:"):
                return line.split("=", 1)[1].strip()
    return ""


def staged(stage, path, prefix):
    """path (under /staging) in this install. The image's build is configured
    with prefix /usr, where /etc paths are absolute (cmake/otpdInstall.cmake);
    a build configured for another prefix keeps them under it (usr/etc)."""
    rel = path[len("/staging/"):].rstrip("/")
    candidates = [rel]
    if prefix != "/usr" and not rel.startswith("usr/"):
        candidates.append("usr/" + rel)
    for c in candidates:
        p = os.path.join(stage, c)
        if os.path.isfile(p) or (os.path.isdir(p) and os.listdir(p)):
            return p
    return None


def package_of(lib):
    """The Debian package that ships lib (a path from ldd), or None."""
    paths = {lib, os.path.realpath(lib)}
    for p in list(paths):
        if p.startswith("/usr/"):
            paths.add(p[4:])
        else:
            paths.add("/usr" + p)
    for p in paths:
        r = subprocess.run(["dpkg", "-S", p], capture_output=True, text=True)
        if r.returncode == 0:
            return r.stdout.split(":", 1)[0].split(",")[0].strip()
    return None


def shared_libraries(files):
    libs = set()
    for f in files:
        r = subprocess.run(["ldd", f], capture_output=True, text=True)
        if r.returncode != 0:
            continue  # not a dynamic ELF (a script)
        for m in re.finditer(r"=>\s+(/\S+)", r.stdout):
            libs.add(m.group(1))
    return libs


def apt_packages(stage_lines):
    pkgs = set()
    for l in stage_lines:
        if not l.upper().startswith("RUN ") or "apt-get install" not in l:
            continue
        for cmd in l[4:].split("&&"):
            words = shlex.split(cmd)
            if "install" in words:
                pkgs.update(w for w in words[words.index("install") + 1:]
                            if not w.startswith("-"))
    return pkgs


def ignored(src, path):
    """Whether .dockerignore keeps path out of the build context."""
    try:
        with open(os.path.join(src, ".dockerignore")) as f:
            patterns = [l.strip().rstrip("/") for l in f if l.strip() and not l.startswith("#")]
    except FileNotFoundError:
        return False
    parts = path.strip("/").split("/")
    prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    return any(fnmatch.fnmatch(p, pat) for p in prefixes for pat in patterns)


def check_dockerfile(src, build_dir, stage, prefix):
    dockerfile = os.path.join(src, "Dockerfile")
    lines = logical_lines(dockerfile)
    images, last = final_stage(lines)
    if images[0] != "debian:12" or images[-1] != "debian:12-slim":
        fail(f"stages are {images}, want debian:12 (build) then debian:12-slim")
    copied_bins = []
    for l in last:
        if not l.upper().startswith("COPY "):
            continue
        words = shlex.split(l)[1:]
        flags = [w for w in words if w.startswith("--")]
        args = [w for w in words if not w.startswith("--")]
        sources, dest = args[:-1], args[-1]
        from_stage = next((f.split("=", 1)[1] for f in flags if f.startswith("--from=")), None)
        for s in sources:
            if from_stage is None:
                continue  # checked below, in every stage
            elif not s.startswith("/staging/"):
                fail(f"COPY --from={from_stage} {s}: copy installed files only (/staging)")
            else:
                p = staged(stage, s, prefix)
                if p is None:
                    fail(f"COPY {s}: not in the install manifest (cmake --install)")
                elif s.rstrip("/").endswith("/bin"):
                    copied_bins += [os.path.join(p, f) for f in os.listdir(p)]
    for l in lines:
        words = shlex.split(l)
        if words[0].upper() != "COPY" or any(w.startswith("--from=") for w in words):
            continue
        for s in [w for w in words[1:] if not w.startswith("--")][:-1]:
            if not os.path.exists(os.path.join(src, s)):
                fail(f"COPY {s}: not in the source tree")
            elif s != "." and ignored(src, s):
                fail(f"COPY {s}: .dockerignore leaves it out of the build context")
    if not copied_bins:
        fail("the runtime stage copies no programs from /staging/usr/bin")

    have = apt_packages(last) | BASE_IMAGE_PACKAGES
    for lib in sorted(shared_libraries(copied_bins)):
        pkg = package_of(lib)
        if pkg is None:
            fail(f"{lib}: no Debian package ships it")
        elif pkg not in have:
            fail(f"the programs load {lib} ({pkg}); the runtime stage does not install {pkg}")

    def last_instruction(name):
        found = [l for l in last if l.upper().startswith(name + " ")]
        return found[-1][len(name) + 1:].strip() if found else None

    cmd = last_instruction("CMD")
    if last_instruction("ENTRYPOINT") is not None:
        fail("an ENTRYPOINT would sit between docker and otpd (otpd is PID 1)")
    if cmd is None or json.loads(cmd)[0] != "otpd":
        fail(f"CMD {cmd}: want the exec form starting with otpd (otpd is PID 1)")
    user = last_instruction("USER")
    if user in (None, "root", "0"):
        fail("the runtime stage runs as root; want a USER")
    health = last_instruction("HEALTHCHECK") or ""
    if "otpctl" not in health or "status" not in health:
        fail("HEALTHCHECK does not run otpctl status")
    if not any(l.startswith("ENV ") and "OTPD_RUNTIME_DIR=" in l for l in last):
        fail("OTPD_RUNTIME_DIR is not set (otpctl in docker exec would not find otpd)")
    return [shlex.split(l)[-1] for l in last if l.upper().startswith("COPY ")]


def check_compose(src, copy_dests):
    try:
        import yaml
    except ImportError:
        fail("python3-yaml is missing (scripts/setup.sh test installs it)")
        return
    with open(os.path.join(src, "docker-compose.yml")) as f:
        doc = yaml.safe_load(f)
    otpd = doc.get("services", {}).get("otpd")
    if not otpd:
        fail("docker-compose.yml has no otpd service")
        return
    build = otpd.get("build", {})
    dockerfile = os.path.join(src, build.get("context", "."), build.get("dockerfile", "Dockerfile"))
    if os.path.realpath(dockerfile) != os.path.realpath(os.path.join(src, "Dockerfile")):
        fail(f"the otpd service builds {dockerfile}, not the Dockerfile at the repo root")
    command = otpd.get("command", [])
    configs = [c for c in command if c.endswith((".yaml", ".yml"))]
    for c in configs:
        if c not in copy_dests and not c.startswith("/etc/otpd/"):
            fail(f"the otpd service runs {c}, which the image does not hold")
    if otpd.get("init", False):
        fail("init: true puts docker-init in front of otpd (otpd is PID 1)")


def main():
    src, build_dir = sys.argv[1], sys.argv[2]
    with tempfile.TemporaryDirectory() as stage:
        install_manifest(build_dir, stage)
        if not os.path.exists(os.path.join(stage, "usr/bin/otpd")):
            print("the build installs no programs (no install rules yet): skipped")
            return SKIP
        dests = check_dockerfile(src, build_dir, stage, configured_prefix(build_dir))
    check_compose(src, dests)
    tracked = subprocess.run(["git", "-C", src, "grep", "-l", "redis_pool/docker", "--", ".",
                              ":!tests/packaging"],
                             capture_output=True, text=True).stdout.split()
    for f in tracked:
        fail(f"{f} still names redis_pool/docker (the Dockerfile is at the repo root)")
    if failures:
        return 1
    print("Dockerfile and docker-compose.yml: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())

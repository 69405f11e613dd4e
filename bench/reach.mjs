#!/usr/bin/env node
/**
 * bench/reach.mjs - `npm run reach`: the measured reach of libvrift.so per
 * runtime (issue 7, requirement 5), inside an image built by `vrift build`.
 *
 * 1. Base image vrift-test/bookworm-reach:<hash of the package list>
 *    (debootstrap bookworm minbase + python3, nodejs, gcc, libc6-dev, make,
 *    strace, cargo, rustc, openjdk-17-jdk-headless; scripts/setup-machine.sh
 *    functions; rootfs and tarball cached under $VRIFT_CACHE, so a rerun only
 *    debootstraps when the package list changes).
 * 2. Trees, made at run time in a temp dir:
 *      /vrift/py    python3-sympy + python3-mpmath (Debian .debs), .pyc
 *                   compiled with unchecked-hash so Python never writes there
 *      /vrift/node  eslint 9, @babel/core, @babel/preset-env, webpack 5 from
 *                   the npm registry (hundreds of packages)
 *      /vrift/ts    typescript 5 + @types/node 20 and a small project
 *      /vrift/c     libpython3.11-dev's headers, a C extension source, and a
 *                   generated make tree (2000 sources and objects)
 *      /vrift/go    Debian's umoci (Go) and an OCI layout
 *      /vrift/rust  Debian's librust-*-dev crate sources (a cargo directory
 *                   source) and two workspaces using them: ws (crates.io deps
 *                   from the directory source) and ws-path (the same deps
 *                   as path dependencies through [patch.crates-io])
 *      /vrift/java  Debian lib*-java jars (lib/), the same jars unpacked
 *                   (classes/), guava + commons-lang3 sources from Debian
 *                   source packages (src/), a small app (app/)
 *    Cargo.lock files and the Java app's classes are made in a container of
 *    the base image with the trees mounted at their /vrift paths.
 * 3. `vrift build --base <base> --tag vrift-reach:built --load` (the log says
 *    which shim variant it picked), then one container of it prebuilds both
 *    cargo workspaces into /var/tmp/cargo (outside the immutable /vrift) and
 *    is committed as vrift-reach:latest, so the measured cargo run is the
 *    no-op up-to-date check.
 * 4. In one container (--network none, SYS_PTRACE for strace) every workload
 *    runs without the shim (LD_PRELOAD emptied) and with it:
 *      - strace -f -y: stat-family syscalls (stat, lstat, fstat, newfstatat,
 *        statx) that name a /vrift path (string argument, or a descriptor
 *        strace -y decodes to /vrift), classified; access/open/readlink
 *        probes of /vrift paths counted apart;
 *      - wall time, measured inside the container (date +%s%N around the
 *        command), REACH_RUNS runs per mode (default 5), modes alternated,
 *        median; warm cache, and cold (host `sync; echo 3 >
 *        /proc/sys/vm/drop_caches` before each run).
 * 5. docs/runtime-reach.md (table + the explanation of every remaining class).
 *
 * Environment: REACH_RUNS (5), REACH_KEEP=1 keeps the temp dir and container,
 * REACH_WORK=<dir> reuses the trees a kept run made there, REACH_ONLY=strace
 * recounts the syscalls and keeps the times already in bench/reach-results.json,
 * REACH_WORKLOADS=key,... measures only those rows and keeps the others,
 * VRIFT_CACHE (/var/cache/vrift). Needs root, docker, the npm registry and
 * Debian's mirror (binary and deb-src). Takes 13-25 minutes on a shared
 * 2-core machine (first run: plus the debootstrap of the base image).
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const CACHE = process.env.VRIFT_CACHE ?? '/var/cache/vrift';
const RUNS = Number(process.env.REACH_RUNS ?? 5);
// Packages of the base image; the image tag and its cache name carry a hash of this list, so
// changing it makes a new rootfs instead of reusing a stale one.
const BASE_PKGS = 'python3,nodejs,gcc,libc6-dev,make,strace,cargo,rustc,openjdk-17-jdk-headless';
const BASE_HASH = createHash('sha256').update(BASE_PKGS).digest('hex').slice(0, 8);
const BASE = `vrift-test/bookworm-reach:${BASE_HASH}`;
const BUILT = 'vrift-reach:built';
const TAG = 'vrift-reach:latest';
// Directory Java workloads' class-list size: this many classes from each jar.
const JAVA_CLASSES_PER_JAR = 20;
const SHIM = '/usr/lib/vrift/libvrift.so';
const log = (s) => process.stderr.write(`reach: ${s}\n`);

function sh(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 1 << 30, ...opts });
  if (r.error) throw r.error;
  if (r.status !== 0 && !opts.allowFail) throw new Error(`${cmd} ${args.join(' ')}: exit ${r.status}\n${r.stderr}`);
  return r;
}

// ---- 1. base image --------------------------------------------------------
function ensureBase() {
  sh('bash', ['-c', `source ${REPO}/scripts/setup-machine.sh; VRIFT_LOG_PREFIX=reach; set -e; vrift_ensure_dockerd; vrift_ensure_base_image ${BASE} bookworm-reach-${BASE_HASH} bookworm ${BASE_PKGS}`], { stdio: ['ignore', 'inherit', 'inherit'] });
}

// ---- 2. trees -------------------------------------------------------------
// apt options for a private amd64 package cache under $VRIFT_CACHE (the host's dpkg state is not touched).
function aptOpts() {
  const d = path.join(CACHE, 'apt-amd64');
  for (const p of ['lists/partial', 'cache/archives/partial']) fs.mkdirSync(path.join(d, p), { recursive: true });
  if (!fs.existsSync(path.join(d, 'status'))) fs.writeFileSync(path.join(d, 'status'), '');
  const A = ['-o', 'APT::Architecture=amd64', '-o', 'APT::Architectures::=amd64', '-o', `Dir::State::Lists=${d}/lists`, '-o', `Dir::Cache=${d}/cache`, '-o', `Dir::State::status=${d}/status`];
  if (!fs.readdirSync(path.join(d, 'lists')).some((f) => f.endsWith('_Packages'))) sh('apt-get', [...A, 'update']);
  return A;
}

/**
 * The real (non-virtual) packages matching `re` in the Depends closure of `roots`
 * (no Recommends/Suggests), roots included: e.g. every librust-*-dev a crate needs.
 */
function aptClosure(roots, re) {
  const A = aptOpts();
  const out = sh('apt-cache', [...A, 'depends', '--recurse', '--no-recommends', '--no-suggests', '--no-conflicts', '--no-breaks', '--no-replaces', '--no-enhances', ...roots]).stdout;
  const names = [...new Set(out.split('\n').filter((l) => re.test(l)))];
  // Virtual packages (Provides only) have no record: keep the names `apt-cache show` prints a record for.
  const shown = sh('apt-cache', [...A, 'show', '--no-all-versions', ...names], { allowFail: true }).stdout;
  return [...new Set([...shown.matchAll(/^Package: (\S+)$/gm)].map((m) => m[1]))].sort();
}

/** Download Debian source packages (.dsc, orig and debian tarballs) into `dir` (deb-src lists kept apart). */
function aptSource(dir, pkgs) {
  const d = path.join(CACHE, 'apt-src');
  for (const p of ['lists/partial', 'cache/archives/partial', 'etc']) fs.mkdirSync(path.join(d, p), { recursive: true });
  if (!fs.existsSync(path.join(d, 'status'))) fs.writeFileSync(path.join(d, 'status'), '');
  const mirror = sh('bash', ['-c', `source ${REPO}/scripts/setup-machine.sh; vrift_debian_mirror`]).stdout.trim();
  fs.writeFileSync(path.join(d, 'etc/sources.list'), `deb-src ${mirror} bookworm main\n`);
  const S = ['-o', `Dir::Etc::SourceList=${d}/etc/sources.list`, '-o', 'Dir::Etc::SourceParts=/nonexistent', '-o', `Dir::State::Lists=${d}/lists`, '-o', `Dir::Cache=${d}/cache`, '-o', `Dir::State::status=${d}/status`];
  if (!fs.readdirSync(path.join(d, 'lists')).some((f) => f.endsWith('_Sources'))) sh('apt-get', [...S, 'update']);
  sh('apt-get', [...S, 'source', '--download-only', ...pkgs], { cwd: dir });
}

function aptDownload(dir, pkgs) {
  const A = aptOpts();
  sh('apt-get', [...A, 'download', ...pkgs], { cwd: dir });
  for (const f of fs.readdirSync(dir).filter((f) => f.endsWith('.deb'))) sh('dpkg-deb', ['-x', path.join(dir, f), path.join(dir, 'x')]);
  return path.join(dir, 'x');
}

function npmInstall(dir, pkgs) {
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name: path.basename(dir), private: true }));
  sh('npm', ['install', '--no-audit', '--no-fund', '--ignore-scripts', ...pkgs], { cwd: dir });
  return Number(sh('npm', ['ls', '--all', '--parseable'], { cwd: dir, allowFail: true }).stdout.trim().split('\n').length - 1);
}

const mkd = (p) => (fs.mkdirSync(p, { recursive: true }), p);

function makeTrees(work) {
  const t = {};
  // Python: sympy + mpmath from Debian.
  const pyx = aptDownload(mkd(path.join(work, 'debs-py')), ['python3-sympy', 'python3-mpmath']);
  fs.renameSync(path.join(pyx, 'usr/lib/python3/dist-packages'), path.join(work, 'py'));
  sh('python3', ['-m', 'compileall', '-q', '-j', '0', '--invalidation-mode', 'unchecked-hash', path.join(work, 'py')]);
  // C: Python's headers (Debian libpython3.11-dev), an extension source, a make tree.
  const cx = aptDownload(mkd(path.join(work, 'debs-c')), ['libpython3.11-dev']);
  fs.mkdirSync(path.join(work, 'c/src'), { recursive: true });
  fs.renameSync(path.join(cx, 'usr/include'), path.join(work, 'c/include'));
  fs.writeFileSync(path.join(work, 'c/src/ext.c'), '#define PY_SSIZE_T_CLEAN\n#include <Python.h>\n#include <structmember.h>\n#include <datetime.h>\nstatic PyObject *f(PyObject *s, PyObject *a) { (void)s; (void)a; Py_RETURN_NONE; }\nstatic PyMethodDef m[] = {{"f", f, METH_NOARGS, ""}, {0}};\nstatic struct PyModuleDef d = {PyModuleDef_HEAD_INIT, "ext", 0, -1, m};\nPyMODINIT_FUNC PyInit_ext(void) { return PyModule_Create(&d); }\n');
  const mk = path.join(work, 'c/mk');
  fs.mkdirSync(path.join(mk, 'src'), { recursive: true });
  fs.mkdirSync(path.join(mk, 'obj'), { recursive: true });
  const objs = [];
  for (let i = 0; i < 2000; i++) {
    fs.writeFileSync(path.join(mk, 'src', `f${i}.c`), `int f${i}(void) { return ${i}; }\n`);
    fs.writeFileSync(path.join(mk, 'src', `f${i}.h`), `int f${i}(void);\n`);
    objs.push(`/vrift/c/mk/obj/f${i}.o`);
  }
  // Objects with distinct bytes (equal files would share one CAS inode) and newer than their
  // sources: everything is up to date, so `make -q` stats every target and prerequisite.
  const old = new Date('2020-01-01T00:00:00Z'), newer = new Date('2021-01-01T00:00:00Z');
  for (let i = 0; i < 2000; i++) {
    fs.writeFileSync(path.join(mk, 'obj', `f${i}.o`), `obj ${i}\n`);
    fs.utimesSync(path.join(mk, 'obj', `f${i}.o`), newer, newer);
    fs.utimesSync(path.join(mk, 'src', `f${i}.c`), old, old);
    fs.utimesSync(path.join(mk, 'src', `f${i}.h`), old, old);
  }
  fs.writeFileSync(path.join(mk, 'Makefile'), `# every path absolute: make stats each target and prerequisite\nall: ${objs.join(' ')}\n/vrift/c/mk/obj/%.o: /vrift/c/mk/src/%.c /vrift/c/mk/src/%.h\n\t$(CC) -c -o $@ $<\n`);
  // Node: a real toolchain tree from the npm registry.
  t.nodePackages = npmInstall(path.join(work, 'node'), ['eslint@9', '@babel/core@7', '@babel/preset-env@7', 'webpack@5']);
  // TypeScript: compiler + @types/node, and a small project that uses them.
  t.tsPackages = npmInstall(path.join(work, 'ts'), ['typescript@5', '@types/node@20']);
  fs.mkdirSync(path.join(work, 'ts/src'), { recursive: true });
  fs.writeFileSync(path.join(work, 'ts/tsconfig.json'), JSON.stringify({ compilerOptions: { strict: true, target: 'es2022', module: 'commonjs', moduleResolution: 'node', types: ['node'], noEmit: true }, include: ['src'] }, null, 2));
  fs.writeFileSync(path.join(work, 'ts/src/a.ts'), "import * as fs from 'node:fs';\nimport * as path from 'node:path';\nimport { b } from './b';\nexport function a(p: string): number { return fs.statSync(path.resolve(p)).size + b(); }\n");
  fs.writeFileSync(path.join(work, 'ts/src/b.ts'), "import { createHash } from 'node:crypto';\nimport { EventEmitter } from 'node:events';\nexport function b(): number { const e = new EventEmitter(); e.emit('x'); return createHash('sha256').update('x').digest().length; }\n");
  // Go: Debian's umoci (dynamically linked Go; Go's os.Stat is a raw syscall).
  fs.mkdirSync(path.join(work, 'go'), { recursive: true });
  fs.copyFileSync('/usr/bin/umoci', path.join(work, 'go/umoci'));
  fs.chmodSync(path.join(work, 'go/umoci'), 0o755);
  sh('umoci', ['init', '--layout', path.join(work, 'go/layout')]);
  sh('umoci', ['new', '--image', `${path.join(work, 'go/layout')}:t`]);
  Object.assign(t, makeRustTree(work), makeJavaTree(work));
  return t;
}

const RUST_CONFIG = '[source.crates-io]\nreplace-with = "debian"\n[source.debian]\ndirectory = "/vrift/rust/registry"\n[net]\noffline = true\n';

/** Write a 3-member cargo workspace (app -> model, textutil) at `dir`; `patch` is an extra Cargo.toml section. */
function writeWorkspace(dir, patch) {
  const file = (rel, text) => (fs.mkdirSync(path.dirname(path.join(dir, rel)), { recursive: true }), fs.writeFileSync(path.join(dir, rel), text));
  file('Cargo.toml', `[workspace]\nmembers = ["app", "model", "textutil"]\n${patch}`);
  file('.cargo/config.toml', RUST_CONFIG);
  const pkg = (name, deps) => `[package]\nname = "${name}"\nversion = "0.1.0"\nedition = "2021"\n[dependencies]\n${deps}`;
  file('app/Cargo.toml', pkg('app', 'clap = { version = "4", features = ["derive"] }\nserde_json = "1"\nmodel = { path = "../model" }\ntextutil = { path = "../textutil" }\n'));
  file('app/src/main.rs', 'use clap::Parser;\n#[derive(Parser)]\nstruct Args { #[arg(long, default_value = "a-b c")] text: String }\nfn main() {\n    let a = Args::parse();\n    let r = model::Record { words: textutil::words(&a.text) };\n    println!("{}", serde_json::to_string(&r).unwrap());\n}\n');
  file('model/Cargo.toml', pkg('model', 'serde = { version = "1", features = ["derive"] }\n'));
  file('model/src/lib.rs', '#[derive(serde::Serialize)]\npub struct Record { pub words: Vec<String> }\n');
  file('textutil/Cargo.toml', pkg('textutil', 'regex = "1"\n'));
  file('textutil/src/lib.rs', 'pub fn words(s: &str) -> Vec<String> { regex::Regex::new(r"[-\\s]+").unwrap().split(s).map(String::from).collect() }\n');
}

/**
 * /vrift/rust: Debian's librust-*-dev crate sources for clap (derive), serde (derive),
 * serde_json and regex as a cargo directory source (registry/), and the workspace ws that
 * uses them. ws-path is written by prepTrees() once ws/Cargo.lock says which crates it uses.
 */
function makeRustTree(work) {
  // aho-corasick: regex's default feature, a Depends of a feature package only.
  const pkgs = aptClosure(['librust-clap-dev', 'librust-serde-derive-dev', 'librust-serde-json-dev', 'librust-regex-dev', 'librust-aho-corasick-dev'], /^librust-.*-dev$/);
  const x = aptDownload(mkd(path.join(work, 'debs-rust')), pkgs);
  fs.mkdirSync(path.join(work, 'rust'), { recursive: true });
  fs.renameSync(path.join(x, 'usr/share/cargo/registry'), path.join(work, 'rust/registry'));
  writeWorkspace(path.join(work, 'rust/ws'), '');
  return { rustCrates: fs.readdirSync(path.join(work, 'rust/registry')).length };
}

/** ws-path: ws with every crate of ws/Cargo.lock patched to its /vrift/rust/registry dir (path dependencies). */
function writePathWorkspace(work) {
  const lock = fs.readFileSync(path.join(work, 'rust/ws/Cargo.lock'), 'utf8');
  const used = [...lock.matchAll(/\[\[package\]\]\nname = "([^"]+)"\nversion = "([^"]+)"\nsource = /g)].map((m) => [m[1], m[2]]);
  const patch = `[patch.crates-io]\n${used.map(([n, v]) => `${n} = { path = "/vrift/rust/registry/${n}-${v}" }`).join('\n')}\n`;
  writeWorkspace(path.join(work, 'rust/ws-path'), patch);
  return used.length;
}

const JAVA_LOAD = `import java.nio.file.*;
/** Load (without initializing) every class named in the file args[0]; exit 1 if none loads. */
public class Load {
  public static void main(String[] a) throws Exception {
    ClassLoader cl = Load.class.getClassLoader();
    int ok = 0, fail = 0;
    for (String n : Files.readAllLines(Paths.get(a[0]))) {
      try { Class.forName(n, false, cl); ok++; } catch (Throwable t) { fail++; }
    }
    System.out.println(ok + " loaded, " + fail + " not loadable");
    if (ok == 0) System.exit(1);
  }
}
`;

const JAVA_APP = `import com.google.common.base.Splitter;
import com.google.common.collect.ArrayListMultimap;
import com.google.common.collect.ImmutableList;
import com.google.common.collect.ImmutableMap;
import com.google.common.collect.Multimap;
import com.google.common.hash.Hashing;
import com.google.common.io.BaseEncoding;
import com.google.common.primitives.Ints;
import org.apache.commons.lang3.StringUtils;
import org.apache.commons.lang3.builder.ToStringBuilder;
import org.apache.commons.lang3.time.DateFormatUtils;
import java.nio.charset.StandardCharsets;

public class App {
  public static void main(String[] args) {
    ImmutableList<String> parts = ImmutableList.copyOf(Splitter.on(',').trimResults().split("a, b ,c"));
    Multimap<String, Integer> m = ArrayListMultimap.create();
    m.put(StringUtils.capitalize(parts.get(0)), Ints.tryParse("3"));
    String h = BaseEncoding.base64().encode(Hashing.sha256().hashString("x", StandardCharsets.UTF_8).asBytes());
    System.out.println(ToStringBuilder.reflectionToString(m) + h + ImmutableMap.of("k", DateFormatUtils.ISO_8601_EXTENDED_DATE_FORMAT.format(0L)));
  }
}
`;

/**
 * /vrift/java: lib/ = the jars of 13 Debian lib*-java packages and their lib*-java
 * dependencies (regular files only: Debian's unversioned names are symlinks and `lib/*`
 * would list a jar twice); classes/<jar>/ = each jar unpacked (exploded classes directories,
 * as a multi-module build's target/classes); src/ = guava (Debian patches applied) and
 * commons-lang3 sources from Debian source packages; app/ = App.java (javac's input),
 * Load.java (compiled by prepTrees()), classes.txt (JAVA_CLASSES_PER_JAR classes per jar)
 * and argument files for javac and for java with the exploded classpath.
 */
function makeJavaTree(work) {
  const pkgs = aptClosure(['libguava-java', 'libcommons-lang3-java', 'libcommons-text-java', 'libcommons-io-java', 'libcommons-collections4-java', 'libjackson2-databind-java', 'libhttpclient-java', 'libasm-java', 'libgoogle-gson-java', 'libjoda-time-java', 'libslf4j-java', 'libbyte-buddy-java', 'libjsoup-java'], /^lib.*-java$/);
  const x = aptDownload(mkd(path.join(work, 'debs-java')), pkgs);
  const J = mkd(path.join(work, 'java'));
  const lib = mkd(path.join(J, 'lib'));
  mkd(path.join(J, 'classes'));
  const jars = fs.readdirSync(path.join(x, 'usr/share/java')).filter((f) => f.endsWith('.jar') && fs.lstatSync(path.join(x, 'usr/share/java', f)).isFile()).sort();
  const classes = [];
  const dirs = [];
  for (const j of jars) {
    fs.copyFileSync(path.join(x, 'usr/share/java', j), path.join(lib, j));
    const d = path.join(J, 'classes', j.replace(/\.jar$/, ''));
    sh('unzip', ['-q', '-o', path.join(lib, j), '-d', d]);
    dirs.push(`/vrift/java/classes/${path.basename(d)}`);
    const names = sh('unzip', ['-Z1', path.join(lib, j)]).stdout.split('\n')
      .filter((n) => n.endsWith('.class') && !n.startsWith('META-INF/') && !n.includes('$') && !/(module|package)-info\.class$/.test(n)).sort();
    classes.push(...names.slice(0, JAVA_CLASSES_PER_JAR).map((n) => n.slice(0, -'.class'.length).replaceAll('/', '.')));
  }
  // Sources: guava with Debian's patches (they add the j2objc/checker annotation stubs it needs) and commons-lang3.
  const sd = mkd(path.join(work, 'debs-src'));
  aptSource(sd, ['libguava-java', 'libcommons-lang3-java']);
  for (const f of fs.readdirSync(sd).filter((f) => /\.tar\.(xz|gz)$/.test(f))) sh('tar', ['xf', path.join(sd, f), '-C', mkd(path.join(sd, f.startsWith('guava') ? 'guava' : 'lang3'))]);
  const gdir = path.join(sd, 'guava', fs.readdirSync(path.join(sd, 'guava')).find((f) => f !== 'debian'));
  for (const p of fs.readFileSync(path.join(sd, 'guava/debian/patches/series'), 'utf8').split('\n').filter((l) => l && !l.startsWith('#'))) {
    sh('patch', ['-p1', '-s', '-i', path.join(sd, 'guava/debian/patches', p)], { cwd: gdir });
  }
  fs.cpSync(path.join(gdir, 'guava/src'), path.join(J, 'src/guava'), { recursive: true });
  fs.cpSync(path.join(gdir, 'futures/failureaccess/src'), path.join(J, 'src/guava'), { recursive: true });
  const ldir = path.join(sd, 'lang3', fs.readdirSync(path.join(sd, 'lang3')).find((f) => f !== 'debian'));
  fs.cpSync(path.join(ldir, 'src/main/java'), path.join(J, 'src/lang3'), { recursive: true });
  const app = mkd(path.join(J, 'app'));
  fs.writeFileSync(path.join(app, 'Load.java'), JAVA_LOAD);
  fs.writeFileSync(path.join(app, 'App.java'), JAVA_APP);
  fs.writeFileSync(path.join(app, 'classes.txt'), classes.join('\n') + '\n');
  fs.writeFileSync(path.join(app, 'exploded.args'), `-cp /vrift/java/app:${dirs.join(':')}\n`);
  const jsr305 = jars.find((j) => j.startsWith('jsr305'));
  const ep = jars.find((j) => j === 'error-prone-annotations.jar') ?? jars.find((j) => j.startsWith('error-prone-annotations'));
  fs.writeFileSync(path.join(app, 'javac.args'), `-encoding UTF-8 -nowarn -d /tmp/jout -sourcepath /vrift/java/src/guava:/vrift/java/src/lang3 -cp /vrift/java/lib/${jsr305}:/vrift/java/lib/${ep}\n`);
  const count = (d) => sh('sh', ['-c', `find "${d}" -type f -name '*.${d.includes('src') ? 'java' : 'class'}' | wc -l`]).stdout.trim();
  return { javaPackages: pkgs.length, javaJars: jars.length, javaClassFiles: Number(count(path.join(J, 'classes'))), javaLoadList: classes.length, javaSources: Number(count(path.join(J, 'src'))) };
}

/**
 * Steps that need the base image's cargo and javac, run in a throwaway container of it
 * (--network none) with the rust and java trees mounted at their /vrift paths:
 * Cargo.lock of ws (then ws-path is written from it) and of ws-path, and Load.class.
 */
function prepTrees(work, t) {
  const run = (script) => sh('docker', ['run', '--rm', '--network', 'none', '-v', `${path.join(work, 'rust')}:/vrift/rust`, '-v', `${path.join(work, 'java')}:/vrift/java`, BASE, 'sh', '-ec', script]);
  run('cd /vrift/rust/ws && cargo generate-lockfile --offline; javac -d /vrift/java/app /vrift/java/app/Load.java');
  t.rustLocked = writePathWorkspace(work);
  run('cd /vrift/rust/ws-path && cargo generate-lockfile --offline');
}

/**
 * Prebuild both cargo workspaces in a container of `BUILT` (target dirs /var/tmp/cargo/*,
 * outside the immutable /vrift) and commit it as `TAG`, keeping BUILT's CMD. The measured
 * `cargo build` is then the up-to-date check. Returns the seconds it took.
 */
function prebuild() {
  const t0 = Date.now();
  const cmd = sh('docker', ['image', 'inspect', BUILT, '--format', '{{json .Config.Cmd}}']).stdout.trim();
  const cid = sh('docker', ['run', '-d', '--network', 'none', BUILT, 'sleep', 'infinity']).stdout.trim();
  try {
    sh('docker', ['exec', cid, 'sh', '-ec', 'for w in ws ws-path; do cd /vrift/rust/$w; CARGO_TARGET_DIR=/var/tmp/cargo/$w cargo build --offline -q; done']);
    sh('docker', ['commit', '--change', `CMD ${cmd === 'null' ? '[]' : cmd}`, '-m', 'vrift reach: cargo target dirs prebuilt', cid, TAG]);
  } finally {
    spawnSync('docker', ['rm', '-f', cid], { stdio: 'ignore' });
  }
  return (Date.now() - t0) / 1000;
}

// ---- 4. workloads -----------------------------------------------------------
const WORKLOADS = [
  { name: 'Python: import sympy (Debian python3-sympy + mpmath)', key: 'python', cmd: ['python3', '-c', 'import sympy, sympy.integrals, sympy.solvers, sympy.physics.mechanics'], env: ['PYTHONPATH=/vrift/py', 'PYTHONDONTWRITEBYTECODE=1'] },
  { name: 'Node: require eslint, @babel/core, @babel/preset-env, webpack', key: 'node', cmd: ['node', '-e', "require('eslint');require('@babel/core');require('@babel/preset-env');require('webpack')"], cwd: '/vrift/node' },
  { name: 'TypeScript: tsc --noEmit (typescript + @types/node under /vrift)', key: 'tsc', runs: 3, cmd: ['node', '/vrift/ts/node_modules/typescript/bin/tsc', '--noEmit', '-p', '/vrift/ts/tsconfig.json'] },
  { name: 'C: gcc -fsyntax-only -I/vrift/c/include/python3.11 (Python.h)', key: 'gcc', cmd: ['gcc', '-fsyntax-only', '-I/vrift/c/include/python3.11', '-I/vrift/c/include', '/vrift/c/src/ext.c'] },
  { name: 'C: make -q, all up to date (2000 targets, 4000 prerequisites, absolute paths)', key: 'make', cmd: ['make', '-q', '-f', '/vrift/c/mk/Makefile'] },
  { name: 'ls -lR /vrift/py/sympy', key: 'ls', cmd: ['sh', '-c', 'ls -lR /vrift/py/sympy >/dev/null'] },
  { name: 'find /vrift/node/node_modules -name package.json', key: 'find', cmd: ['sh', '-c', 'find /vrift/node/node_modules -name package.json >/dev/null'] },
  { name: 'Go: umoci ls --layout /vrift/go/layout', key: 'go', cmd: ['/vrift/go/umoci', 'ls', '--layout', '/vrift/go/layout'] },
  { name: 'Rust: cargo build --offline, up to date (3-member workspace, crates.io deps from a /vrift directory source)', key: 'cargo', ...cargo('ws') },
  { name: 'Rust: cargo build --offline, up to date (same workspace, its deps as path dependencies)', key: 'cargo-path', ...cargo('ws-path') },
  { name: 'Java: javac -sourcepath guava + commons-lang3 (Debian sources) of a 1-file app', key: 'javac', runs: 3, cmd: ['javac', '@/vrift/java/app/javac.args', '/vrift/java/app/App.java'] },
  { name: "Java: java -cp '/vrift/java/lib/*' (Debian jars), load a class list", key: 'java-jars', cmd: ['java', '-cp', '/vrift/java/app:/vrift/java/lib/*', 'Load', '/vrift/java/app/classes.txt'] },
  { name: 'Java: java -cp of the same jars unpacked (one class directory per jar), same list', key: 'java-dirs', cmd: ['java', '@/vrift/java/app/exploded.args', 'Load', '/vrift/java/app/classes.txt'] },
];

/** The cargo workload for workspace `ws`: the no-op build of a prebuilt target dir (see prebuild()). */
function cargo(ws) {
  const env = [`CARGO_TARGET_DIR=/var/tmp/cargo/${ws}`];
  return {
    cmd: ['cargo', 'build', '--offline'], cwd: `/vrift/rust/${ws}`, env,
    verify: { cmd: ['cargo', 'build', '--offline', '-v'], ok: (out) => /Finished/.test(out) && !/Compiling|Running/.test(out), what: 'cargo build is not a no-op (a crate was rebuilt): the up-to-date check saw different metadata' },
  };
}

const STAT = new Set(['stat', 'lstat', 'fstat', 'newfstatat', 'statx', 'stat64', 'lstat64', 'fstat64', 'fstatat64']);
const PROBE = new Set(['access', 'faccessat', 'faccessat2', 'open', 'openat', 'readlink', 'readlinkat']);

/**
 * Classify one strace -f -y line. Returns undefined when it does not touch
 * /vrift. `init` says whether this pid's shim constructor has run (it opens
 * the blob); `shim` whether the run has the shim at all.
 */
function classify(sys, args, init, shim) {
  const m = /^(-?\d+|AT_FDCWD)(<([^>]*)>)?, "([^"]*)"/.exec(args) ?? /^"([^"]*)"/.exec(args);
  let dirfd, dirPath, p;
  if (sys === 'stat' || sys === 'lstat' || sys === 'access' || sys === 'open' || sys === 'readlink') {
    const s = /^"([^"]*)"/.exec(args);
    p = s?.[1];
  } else if (sys === 'fstat') {
    const f = /^\d+<([^>]*)>/.exec(args);
    if (!f || !f[1].startsWith('/vrift')) return undefined;
    return 'fstat(fd)';
  } else if (m && m.length === 5) {
    dirfd = m[1];
    dirPath = m[3];
    p = m[4];
  } else return undefined;
  if (p === undefined) return undefined;
  if (p === '' && dirPath?.startsWith('/vrift')) return 'fstat(fd)'; // AT_EMPTY_PATH
  if (p.startsWith('/')) {
    if (!p.startsWith('/vrift')) return undefined;
    if (!shim) return 'absolute';
    // (statx with a mask narrower than STATX_BASIC_STATS had a class of its own until the shim
    // answered narrow masks, c89a695.)
    return init ? 'absolute, after init (uncertain blob entry, glibc-internal or raw syscall)' : 'before the shim init (loader, earlier constructors)';
  }
  if (dirfd !== undefined && dirfd !== 'AT_FDCWD' && dirPath?.startsWith('/vrift')) return 'dirfd-relative';
  if (dirfd === 'AT_FDCWD' && dirPath?.startsWith('/vrift')) return 'cwd-relative';
  return undefined;
}

function countTrace(text, shim) {
  const init = new Map();
  const stat = {};
  const probes = { total: 0, enoent: 0 };
  let statTotal = 0;
  for (const line of text.split('\n')) {
    const m = /^(\d+)\s+([a-z0-9_]+)\((.*)$/.exec(line);
    if (!m) continue;
    const [, pid, sys, args] = m;
    if (sys === 'execve') {
      init.set(pid, false);
      continue;
    }
    if (sys === 'openat' && args.includes('"/usr/lib/vrift/psfs.blob"')) {
      init.set(pid, true);
      continue;
    }
    if (sys === 'clone' || sys === 'clone3' || sys === 'vfork' || sys === 'fork') continue;
    if (!STAT.has(sys) && !PROBE.has(sys)) continue;
    // The shim's own cold statx of roots[0] at init (PSFS_H_DEV_RUNTIME / root mtime check).
    const own = shim && sys === 'statx' && /^AT_FDCWD(<[^>]*>)?, "\/vrift", .*STATX_MNT_ID/.test(args);
    // strace -y decodes dirfds; a fork child inherits its parent's init state
    const c = own ? 'shim init: statx of the root, once per process' : classify(sys, args, init.get(pid) ?? true, shim);
    if (!c) continue;
    if (STAT.has(sys)) {
      statTotal++;
      stat[c] = (stat[c] ?? 0) + 1;
    } else {
      probes.total++;
      if (/= -1 ENOENT/.test(line)) probes.enoent++;
    }
  }
  return { statTotal, stat, probes };
}

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

let loadStart = '';
// REACH_ONLY=strace: recount the syscalls, keep the wall/CPU times of bench/reach-results.json.
const ONLY_STRACE = process.env.REACH_ONLY === 'strace';
// REACH_WORKLOADS=key,key: measure only these workloads, keep the other rows of bench/reach-results.json
// (each row records the date and shim commit it was measured with; the doc says when they differ).
const ONLY_KEYS = process.env.REACH_WORKLOADS?.split(',');
let prevMeta;

function main() {
  if (process.getuid?.() !== 0) throw new Error('needs root (drop_caches, debootstrap, docker)');
  const t0 = Date.now();
  loadStart = os.loadavg().map((x) => x.toFixed(1)).join(' ');
  ensureBase();
  // REACH_WORK=<dir>: reuse the trees a REACH_KEEP=1 run left there (for iterating on workloads).
  const work = process.env.REACH_WORK ?? fs.mkdtempSync(path.join(os.tmpdir(), 'vrift-reach-'));
  fs.chmodSync(work, 0o755);
  let cid;
  try {
    let trees;
    if (fs.existsSync(path.join(work, 'trees.json'))) {
      trees = JSON.parse(fs.readFileSync(path.join(work, 'trees.json'), 'utf8'));
      log(`reusing the trees in ${work}`);
    } else {
      log(`making trees in ${work}`);
      trees = makeTrees(work);
      prepTrees(work, trees);
      fs.writeFileSync(path.join(work, 'trees.json'), JSON.stringify(trees));
    }
    log(`npm: ${trees.nodePackages} packages (node), ${trees.tsPackages} (ts); rust: ${trees.rustCrates} crates, ${trees.rustLocked} locked; java: ${trees.javaJars} jars, ${trees.javaClassFiles} class files, ${trees.javaSources} sources`);
    const adds = ['py', 'node', 'ts', 'c', 'go', 'rust', 'java'].flatMap((d) => ['--add', `${path.join(work, d)}:/vrift/${d}`]);
    const b = sh('node', [path.join(REPO, 'bin/vrift.js'), 'build', '--base', BASE, '--tag', BUILT, '--load', '--json', ...adds]);
    const picked = b.stderr.split('\n').find((l) => l.includes('shim: picked')) ?? b.stderr.split('\n').find((l) => l.includes('shim:')) ?? '';
    const built = JSON.parse(b.stdout);
    log(picked);
    const prebuildSeconds = prebuild();
    log(`cargo workspaces prebuilt in ${prebuildSeconds.toFixed(0)} s`);
    // Which shim the image carries: the commit of shim/ and whether the tree had changes there.
    const shimCommit = sh('git', ['-C', REPO, 'log', '-1', '--format=%h', '--', 'shim/']).stdout.trim();
    const shimDirty = sh('git', ['-C', REPO, 'status', '--porcelain', '--', 'shim/']).stdout.trim().split('\n').filter(Boolean).map((l) => l.slice(3));
    cid = sh('docker', ['run', '-d', '--network', 'none', '--cap-add', 'SYS_PTRACE', '--security-opt', 'seccomp=unconfined', TAG, 'sleep', 'infinity']).stdout.trim();
    const execIn = (w, withShim, extra) => {
      const args = ['exec', '-e', `LD_PRELOAD=${withShim ? SHIM : ''}`, ...(w.env ?? []).flatMap((e) => ['-e', e]), ...(w.cwd ? ['-w', w.cwd] : []), cid, ...extra];
      return sh('docker', args, { allowFail: true });
    };
    const versions = execIn({}, false, ['sh', '-c', 'python3 --version; node --version; gcc --version | head -1; make --version | head -1; ls --version | head -1; cargo --version; rustc --version; java -version 2>&1 | head -1; strace -V | head -1; ldd --version | head -1']).stdout.trim().split('\n');
    const results = [];
    for (const w of WORKLOADS.filter((x) => !ONLY_KEYS || ONLY_KEYS.includes(x.key))) {
      const r = { w };
      // A workload whose result depends on what it sees (cargo's up-to-date check) must do the
      // same work in both modes: check it once per mode before measuring.
      for (const mode of w.verify ? [false, true] : []) {
        const v = execIn(w, mode, w.verify.cmd);
        if (v.status !== 0 || !w.verify.ok(v.stdout + v.stderr)) throw new Error(`${w.key} (${mode ? 'shim' : 'no shim'}): ${w.verify.what}:\n${(v.stdout + v.stderr).slice(0, 3000)}`);
      }
      for (const mode of [false, true]) {
        const tr = execIn(w, mode, ['sh', '-c', 'strace -f -qq -y -s 256 -o /tmp/trace.txt -e trace=execve,%stat,%lstat,%fstat,statx,newfstatat,access,faccessat,faccessat2,open,openat,readlink,readlinkat "$@" >/dev/null 2>/tmp/err.txt; echo rc=$?; cat /tmp/trace.txt', 'sh', ...w.cmd]);
        const rc = /^rc=(\d+)/.exec(tr.stdout)?.[1];
        if (rc !== '0') throw new Error(`${w.key} (${mode ? 'shim' : 'no shim'}) under strace: exit ${rc}: ${execIn({}, false, ['cat', '/tmp/err.txt']).stdout.slice(0, 2000)}`);
        r[mode ? 'shim' : 'plain'] = countTrace(tr.stdout, mode);
      }
      const prev = ONLY_STRACE ? JSON.parse(fs.readFileSync(path.join(REPO, 'bench/reach-results.json'), 'utf8')) : undefined;
      const p = prev?.results.find((x) => x.key === w.key);
      if (p) {
        Object.assign(r, { warm: p.warm, cold: p.cold });
        prevMeta = prev.meta;
      }
      for (const cold of p ? [] : [false, true]) {
        const times = { plain: [], shim: [] };
        const cpus = { plain: [], shim: [] };
        const runs = Math.min(RUNS, w.runs ?? RUNS);
        for (let i = 0; i < runs + 1; i++) {
          for (const mode of [false, true]) {
            if (cold) sh('sh', ['-c', 'sync; echo 3 > /proc/sys/vm/drop_caches']);
            // wall time (date +%s%N) and the children's user+sys CPU time (dash `times`, 10 ms ticks)
            const out = execIn(w, mode, ['sh', '-c', 't0=$(date +%s%N); "$@" >/dev/null 2>&1; rc=$?; t1=$(date +%s%N); echo $rc $((t1 - t0)); times', 'sh', ...w.cmd]).stdout.trim().split('\n');
            const [rc, ns] = out[0].split(' ');
            if (rc !== '0') throw new Error(`${w.key}: exit ${rc}`);
            const cpu = (out[2] ?? '').split(' ').reduce((a, t) => { const m = /^(\d+)m([\d.]+)s$/.exec(t); return a + (m ? Number(m[1]) * 60e3 + Number(m[2]) * 1e3 : 0); }, 0);
            if (i > 0 || cold) {
              times[mode ? 'shim' : 'plain'].push(Number(ns) / 1e6); // warm: first pair warms up
              cpus[mode ? 'shim' : 'plain'].push(cpu);
            }
          }
        }
        r[cold ? 'cold' : 'warm'] = { plain: median(times.plain), shim: median(times.shim), cpuPlain: median(cpus.plain), cpuShim: median(cpus.shim), n: times.plain.length };
      }
      log(`${w.key}: stat on /vrift ${r.plain.statTotal} -> ${r.shim.statTotal}; warm ${r.warm.plain.toFixed(0)} -> ${r.warm.shim.toFixed(0)} ms; cold ${r.cold.plain.toFixed(0)} -> ${r.cold.shim.toFixed(0)} ms`);
      results.push(r);
    }
    const fresh = { picked, files: built.stats.files, blobBytes: built.stats.blobBytes, versions, trees, base: BASE, basePkgs: BASE_PKGS, shimCommit, shimDirty, prebuildSeconds };
    const meta = prevMeta ? { ...prevMeta, ...fresh } : { date: new Date().toISOString(), ...fresh, runs: RUNS, seconds: (Date.now() - t0) / 1000, cores: os.cpus().length, kernel: os.release(), load: `${loadStart} at the start, ${os.loadavg().map((x) => x.toFixed(1)).join(' ')} at the end` };
    const now = results.map((r) => ({ key: r.w.key, name: r.w.name, runs: Math.min(RUNS, r.w.runs ?? RUNS), date: meta.date, shimCommit, plain: r.plain, shim: r.shim, warm: r.warm, cold: r.cold }));
    let rows = now;
    if (ONLY_KEYS) {
      const old = JSON.parse(fs.readFileSync(path.join(REPO, 'bench/reach-results.json'), 'utf8'));
      rows = WORKLOADS.map((w) => now.find((x) => x.key === w.key) ?? old.results.find((x) => x.key === w.key)).filter(Boolean);
      Object.assign(meta, { date: old.meta.date, seconds: old.meta.seconds, runs: old.meta.runs, load: old.meta.load, partial: `${ONLY_KEYS.join(', ')} re-measured on ${new Date().toISOString().slice(0, 10)} (load ${loadStart})` });
    }
    const saved = { meta, results: rows };
    fs.writeFileSync(path.join(REPO, 'bench/reach-results.json'), JSON.stringify(saved, null, 2) + '\n');
    writeDoc(saved);
    log(`wrote docs/runtime-reach.md and bench/reach-results.json in ${((Date.now() - t0) / 1000).toFixed(0)} s`);
  } finally {
    if (!process.env.REACH_KEEP) {
      if (cid) spawnSync('docker', ['rm', '-f', cid], { stdio: 'ignore' });
      fs.rmSync(work, { recursive: true, force: true });
    } else log(`kept ${work} and container ${cid}`);
  }
}

function writeDoc(saved) {
  fs.writeFileSync(path.join(REPO, 'docs/runtime-reach.md.tmp'), render(saved.results, saved.meta));
  fs.renameSync(path.join(REPO, 'docs/runtime-reach.md.tmp'), path.join(REPO, 'docs/runtime-reach.md'));
}

const pct = (a, b) => (a === 0 ? '-' : `${((100 * (a - b)) / a).toFixed(1)} %`);
const ms = (x) => (x >= 100 ? x.toFixed(0) : x.toFixed(1));
const ratio = (p, s) => (s / p).toFixed(2);

function render(results, meta) {
  const L = [];
  L.push('# Runtime reach of libvrift.so (issue 7)', '');
  L.push(`Generated by \`npm run reach\` (bench/reach.mjs) on ${meta.date.slice(0, 10)}; raw numbers in bench/reach-results.json. Do not edit the tables by hand: rerun the script.`, '');
  const base = meta.base ?? 'vrift-test/bookworm-reach:latest';
  const pkgs = (meta.basePkgs ?? 'python3,nodejs,gcc,libc6-dev,make,strace').split(',').join(', ');
  L.push(`Image: \`${TAG}\` built by \`vrift build --base ${base}\` (debootstrap bookworm minbase + ${pkgs})${meta.prebuildSeconds ? `, plus one committed layer with both cargo workspaces prebuilt into /var/tmp/cargo (${meta.prebuildSeconds.toFixed(0)} s), so the measured \`cargo build\` is the up-to-date check` : ''}; ${meta.files} files under /vrift, blob ${meta.blobBytes} bytes. Build log: \`${meta.picked.trim()}\`.`, '');
  if (meta.shimCommit) L.push(`Shim measured: built from the last commit touching shim/, \`${meta.shimCommit}\`${meta.shimDirty?.length ? `, with uncommitted changes in the working tree to ${meta.shimDirty.join(', ')} (other engineers' work in progress; \`npm run build\` rebuilt the shim and the blob writer from the same tree)` : ''}.`, '');
  const mixed = [...new Set(results.map((r) => `${r.date?.slice(0, 10) ?? meta.date.slice(0, 10)} / ${r.shimCommit ?? 'earlier shim'}`))];
  if (mixed.length > 1) L.push(`Rows measured in different runs (date / shim commit): ${results.map((r) => `${r.key}: ${r.date?.slice(0, 10) ?? '?'} / ${r.shimCommit ?? 'earlier shim'}`).join('; ')}.`, '');
  L.push(`In the container: ${meta.versions.join('; ')}. Host: ${meta.cores} cores (shared with other work while measured), Linux ${meta.kernel}.`, '');
  L.push(`Trees: /vrift/py = Debian python3-sympy + python3-mpmath (.pyc precompiled, unchecked-hash); /vrift/node = eslint 9, @babel/core 7, @babel/preset-env 7, webpack 5 installed from the npm registry at run time (${meta.trees.nodePackages} packages); /vrift/ts = typescript 5 + @types/node 20 (${meta.trees.tsPackages} packages) and a 2-file project; /vrift/c = libpython3.11-dev headers + a C extension source + a generated make tree; /vrift/go = Debian umoci (Go) + an OCI layout${meta.trees.rustCrates ? `; /vrift/rust = ${meta.trees.rustCrates} crate sources from Debian librust-*-dev packages as a cargo directory source (the workspace locks ${meta.trees.rustLocked} of them: clap 4 with derive, serde with derive, serde_json, regex) + two copies of a 3-member workspace (ws: deps from the directory source; ws-path: the same deps through \`[patch.crates-io]\` as path dependencies, so cargo checks the mtime of each of their source files); /vrift/java = ${meta.trees.javaJars} jars of ${meta.trees.javaPackages} Debian lib*-java packages (lib/), the same jars unpacked into one directory each (${meta.trees.javaClassFiles} class files), guava 31.1 (Debian's patches applied) + commons-lang3 3.12 sources from Debian source packages (${meta.trees.javaSources} .java files), and a class list of ${meta.trees.javaLoadList} classes (the first ${JAVA_CLASSES_PER_JAR} of each jar in name order)` : ''}.`, '');
  L.push('## Stat-family syscalls on /vrift paths', '');
  L.push('Counted with `strace -f -y` (stat, lstat, fstat, newfstatat, statx whose path is under /vrift, or whose descriptor strace decodes to /vrift), one run each, without the shim (`LD_PRELOAD=`) and with it (the image default).', '');
  L.push('"by path" leaves out `fstat(fd)` (fstat, or fstatat/statx with AT_EMPTY_PATH, on a descriptor open on a /vrift file: a descriptor names no path, so no stat shim can answer it, see below) and the shim\'s own statx of the root at init.', '');
  L.push('| workload | all: without | all: with | all: removed | by path: without | by path: with | by path: removed | remaining with the shim, by class | access/open/readlink probes of /vrift, without -> with (of which ENOENT) |');
  L.push('|---|---:|---:|---:|---:|---:|---:|---|---|');
  for (const r of results) {
    const cls = Object.entries(r.shim.stat).map(([k, v]) => `${k}: ${v}`).join('; ') || '-';
    const byPath = (x) => x.statTotal - (x.stat['fstat(fd)'] ?? 0) - (x.stat['shim init: statx of the root, once per process'] ?? 0);
    L.push(`| ${r.name} | ${r.plain.statTotal} | ${r.shim.statTotal} | ${pct(r.plain.statTotal, r.shim.statTotal)} | ${byPath(r.plain)} | ${byPath(r.shim)} | ${pct(byPath(r.plain), byPath(r.shim))} | ${cls} | ${r.plain.probes.total} (${r.plain.probes.enoent}) -> ${r.shim.probes.total} (${r.shim.probes.enoent}) |`);
  }
  L.push('', '## Wall time', '');
  const fewer = results.filter((r) => r.runs && r.runs !== meta.runs).map((r) => `${r.key}: ${r.runs}`);
  L.push(`Median of ${meta.runs} runs per mode${fewer.length ? ` (${fewer.join(', ')})` : ' (tsc: 3)'} (modes alternated, side by side), measured inside the container around the command (\`date +%s%N\`). Warm: page and dentry caches warm (one unmeasured pair first). Cold: \`sync; echo 3 > /proc/sys/vm/drop_caches\` on the host before every run. Ratio = with / without (< 1: faster with the shim). CPU = user + sys time of the command and its children (dash \`times\`, 10 ms ticks), less sensitive than wall time to the other work on the machine. Load average while measured: ${meta.load}.`, '');
  L.push('| workload | warm wall without (ms) | warm wall with (ms) | ratio | warm CPU without / with (ms) | cold wall without (ms) | cold wall with (ms) | ratio | cold CPU without / with (ms) |');
  L.push('|---|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const r of results) L.push(`| ${r.name} | ${ms(r.warm.plain)} | ${ms(r.warm.shim)} | ${ratio(r.warm.plain, r.warm.shim)} | ${ms(r.warm.cpuPlain)} / ${ms(r.warm.cpuShim)} | ${ms(r.cold.plain)} | ${ms(r.cold.shim)} | ${ratio(r.cold.plain, r.cold.shim)} | ${ms(r.cold.cpuPlain)} / ${ms(r.cold.cpuShim)} |`);
  L.push('', `Whole run: ${meta.seconds.toFixed(0)} s.${meta.partial ? ` Partial rerun: ${meta.partial}.` : ''}`, '');
  L.push(fs.readFileSync(path.join(REPO, 'bench/reach-notes.md'), 'utf8'));
  return L.join('\n');
}

// --render: rewrite docs/runtime-reach.md from bench/reach-results.json (after editing the notes).
if (process.argv.includes('--render')) writeDoc(JSON.parse(fs.readFileSync(path.join(REPO, 'bench/reach-results.json'), 'utf8')));
else if (!process.env.REACH_NO_MAIN) main();
export { makeJavaTree, makeRustTree, prepTrees };

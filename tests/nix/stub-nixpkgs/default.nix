# A strict stand-in for the nixpkgs attributes reproseg's flake uses, and nothing more.
#
# Every function takes exactly the arguments the flake gives it (no `...`), so a misspelled
# attribute or argument fails evaluation, as it would against nixpkgs. Derivations build
# offline with the host's /bin/sh (run with --option sandbox false): they record what they
# stand for instead of fetching or compiling anything. The Python environment runs the host's
# Python (the one named in a file `host-python` beside this file, as the tests write it, else
# /usr/bin/python3), so `nix develop --command` can run a command in the shell and `nix run`
# a wrapper; runCommandCC copies its src to $out and records its script, which it does not run
# (the app's kernels are not compiled here), and writeShellScriptBin and symlinkJoin build what
# nixpkgs' do.
#
# Like nixpkgs it refuses a Nix older than it supports, and like nixpkgs' autoPatchelfHook
# (at evaluation time here, at build time there) it fails when a wheel needs a shared library
# that neither the wheel, its buildInputs nor glibc hold. It knows a wheel's libraries when the
# tables nix/wheel-libraries*.json are copied beside this file, as tests/nix_test.py does.
{ system, config }:
let
  # nixpkgs 25.11 refuses Nix < 2.18 (lib/minfeatures.nix). A copy of the stub may lower the
  # floor in a file `minimum-nix-version` (the tests do, to run on Debian 12's Nix 2.8).
  minimumNix =
    if builtins.pathExists ./minimum-nix-version then
      builtins.head (builtins.match "([0-9.]+)\n?" (builtins.readFile ./minimum-nix-version))
    else
      "2.18";
  # The interpreter the Python environment runs (see above), a path with no space or quote.
  hostPython =
    builtins.head (builtins.match "([^ '\"\n]+)\n?" (builtins.readFile ./host-python));
in
assert
  builtins.compareVersions builtins.nixVersion minimumNix >= 0
  || abort "This version of Nixpkgs requires Nix >= ${minimumNix}, please upgrade (this is Nix ${builtins.nixVersion})";
assert system == "x86_64-linux";
assert builtins.attrNames config == [ "allowUnfree" ];
let
  stub =
    name: attrs:
    derivation (
      {
        inherit name system;
        builder = "/bin/sh";
        args = [
          "-c"
          "echo stub > $out"
        ];
      }
      // attrs
    );
  isDrv = x: builtins.isAttrs x && x ? type && x.type == "derivation";

  # {wheel name: {files: {path: {soname, needed}}}}, from the tables beside this file if any.
  readTable =
    file: if builtins.pathExists file then builtins.fromJSON (builtins.readFile file) else { };
  libraryTable =
    readTable ./wheel-libraries.json // readTable ./wheel-libraries-cuda.json;
  # What the packages that nixpkgs' autoPatchelfHook searches hold. glibc comes with the
  # compiler's wrapper and is always searched.
  glibc = [
    "ld-linux-x86-64.so.2"
    "libc.so.6"
    "libdl.so.2"
    "libm.so.6"
    "libpthread.so.0"
    "libresolv.so.2"
    "librt.so.1"
    "libutil.so.1"
  ];
  gccLibraries = [
    "libatomic.so.1"
    "libgcc_s.so.1"
    "libgomp.so.1"
    "libquadmath.so.0"
    "libstdc++.so.6"
  ];
  # autoPatchelfHook's check: every DT_NEEDED of every ELF file resolves by file name.
  checkLibraries =
    pname: files: buildInputs:
    let
      held =
        glibc
        ++ map baseNameOf (builtins.attrNames files)
        ++ builtins.concatMap (p: p.libraries) buildInputs;
      missing = builtins.concatMap (
        path:
        map (library: "${library} wanted by ${path}") (
          builtins.filter (library: !builtins.elem library held) files.${path}.needed
        )
      ) (builtins.attrNames files);
    in
    missing == [ ]
    || throw "auto-patchelf could not satisfy dependency ${builtins.head missing} (wheel ${pname}; ${toString (builtins.length missing)} unsatisfied in all)";
  hex64 = s: builtins.match "[0-9a-f]{64}" s != null;

  fetchPypi =
    {
      pname,
      version,
      format,
      dist,
      python,
      abi,
      platform,
      sha256,
    }:
    assert format == "wheel";
    assert hex64 sha256;
    stub "${pname}-${version}-${python}-${abi}-${platform}.whl" {
      # The URL nixpkgs' fetchPypi builds from these fields.
      url = "packages/${dist}/${builtins.substring 0 1 pname}/${pname}/${pname}-${version}-${python}-${abi}-${platform}.whl";
    }
    // {
      wheel = { inherit pname version sha256; };
    };

  buildPythonPackage =
    {
      pname,
      version,
      format,
      src,
      nativeBuildInputs,
      buildInputs,
      dontCheckRuntimeDeps,
      pythonImportsCheck,
    }:
    assert format == "wheel";
    assert src ? wheel;
    assert builtins.all isDrv (nativeBuildInputs ++ buildInputs);
    let
      # The wheel's ELF files, by the lock's name for it (the tables' key).
      files = (libraryTable.${pname} or { files = { }; }).files;
    in
    assert builtins.all (p: p ? libraries) buildInputs;
    assert
      builtins.elem autoPatchelfHook nativeBuildInputs -> checkLibraries pname files buildInputs;
    stub "python3.11-${pname}-${version}" { }
    // {
      wheel = src.wheel // { name = pname; };
      libraries = map baseNameOf (builtins.attrNames files);
      inputNames = map (p: p.name) buildInputs;
    };

  autoPatchelfHook = stub "auto-patchelf-hook" { };

  python311 = {
    sitePackages = "lib/python3.11/site-packages";
    pkgs = { inherit buildPythonPackage; };
    withPackages =
      f:
      let
        packages = f python311.pkgs;
      in
      assert builtins.all (p: p ? wheel) packages;
      stub "python3-3.11-env" {
        args = [
          "-c"
          (
            if builtins.pathExists ./host-python then
              "/bin/mkdir -p $out/bin && printf '#!/bin/sh\\nexec %s \"$@\"\\n' ${hostPython} > $out/bin/python3 && /bin/chmod +x $out/bin/python3"
            else
              "/bin/mkdir -p $out/bin && /bin/ln -s /usr/bin/python3 $out/bin/python3"
          )
        ];
        # Depends on every package, as the real environment does (so their checks run).
        inherit packages;
      }
      // {
        inherit packages;
        wheels = map (p: p.wheel) packages;
      };
  };

  mkShell =
    {
      packages,
      BAZEL_PYTHON,
      REPROSEG_TOOLCHAIN,
      USE_BAZEL_VERSION,
      shellHook,
    }:
    assert builtins.all isDrv packages;
    derivation {
      name = "reproseg-shell";
      # nix develop's get-env.sh writes the environment to each of $outputs.
      outputs = [ "out" ];
      inherit
        system
        BAZEL_PYTHON
        REPROSEG_TOOLCHAIN
        USE_BAZEL_VERSION
        shellHook
        ;
      builder = "/bin/bash";
      args = [
        "-c"
        "echo 'a development shell, not a build' > $out"
      ];
      PATH = builtins.concatStringsSep ":" (map (p: "${p}/bin") packages ++ [ "/usr/bin:/bin" ]);
    }
    // {
      inherit packages;
    };

  # nixpkgs' runs the text with its runtimeShell (bash); the stub with the host's.
  writeShellScriptBin =
    name: text:
    stub name {
      text = "#!/bin/bash\n" + text;
      passAsFile = [ "text" ];
      args = [
        "-c"
        "/bin/mkdir -p $out/bin && /bin/cp $textPath $out/bin/${name} && /bin/chmod +x $out/bin/${name}"
      ];
    };

  runCommand =
    name: env: script:
    assert builtins.attrNames env == [
      "nativeBuildInputs"
      "src"
    ];
    stub name { passthru_script = script; };

  # runCommand with the C compiler (stdenv.cc) on PATH: here the app's build, whose src is a
  # filtered copy of the source (builtins.path). The stub copies src and records the script.
  runCommandCC =
    name: env: script:
    assert builtins.attrNames env == [
      "nativeBuildInputs"
      "src"
    ];
    assert builtins.all isDrv env.nativeBuildInputs;
    assert builtins.isString env.src || builtins.isPath env.src;
    stub name {
      inherit (env) src nativeBuildInputs;
      passthru_script = script;
      args = [
        "-c"
        "/bin/cp -r $src $out && /bin/chmod -R u+w $out"
      ];
    };

  # nixpkgs' symlinkJoin links every file of its paths into one tree (passthru: attributes of
  # the result, not of the build).
  symlinkJoin =
    {
      name,
      paths,
      passthru,
    }:
    assert builtins.all isDrv paths;
    stub name {
      inherit paths;
      args = [
        "-c"
        "/bin/mkdir $out && for p in $paths; do /bin/cp -rsT $p $out && /bin/chmod -R u+w $out; done"
      ];
    }
    // passthru;

  # nixpkgs' streamLayeredImage takes no other arguments than its own (no `...`); those the
  # flake does not pass are left out here, so a misspelled one fails. The result holds the
  # arguments (`arguments`, the stub's own) besides nixpkgs' imageName and imageTag.
  dockerTools.buildLayeredImage =
    {
      name,
      tag,
      contents,
      config,
      extraCommands,
    }:
    assert builtins.isString tag;
    assert builtins.all isDrv contents;
    assert builtins.isAttrs config && builtins.isString extraCommands;
    stub "${baseNameOf name}.tar.gz" { }
    // {
      imageName = name;
      imageTag = tag;
      arguments = {
        inherit name tag config extraCommands;
        contents = map (p: p.outPath) contents;
      };
    };
in
{
  inherit
    fetchPypi
    python311
    mkShell
    runCommand
    runCommandCC
    symlinkJoin
    dockerTools
    writeShellScriptBin
    ;
  # `nix develop` starts the shell with the flake's nixpkgs' bashInteractive.
  bashInteractive = stub "bash-interactive" {
    args = [
      "-c"
      "/bin/mkdir -p $out/bin && /bin/ln -s /bin/bash $out/bin/bash"
    ];
  };
  inherit autoPatchelfHook;
  stdenv.cc.cc.lib = stub "gcc-lib" { } // {
    libraries = gccLibraries;
  };
  zlib = stub "zlib" { } // {
    libraries = [ "libz.so.1" ];
  };
  # A `bazel` on the shell's PATH that says which it is, of a version other than .bazelversion's.
  bazel_7 =
    stub "bazel-7" {
      args = [
        "-c"
        "/bin/mkdir -p $out/bin && printf '#!/bin/sh\\necho bazel 7 stub\\n' > $out/bin/bazel && /bin/chmod +x $out/bin/bazel"
      ];
    }
    // {
      version = "7.6.0";
    };
  git = stub "git" { };
  qemu-user = stub "qemu-user" { };
  nixfmt = stub "nixfmt" { };
  # The image's contents besides the wrappers.
  bash = stub "bash" { };
  coreutils = stub "coreutils" { };
  cacert = stub "nss-cacert" { };
}

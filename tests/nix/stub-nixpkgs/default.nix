# A strict stand-in for the nixpkgs attributes reproseg's flake uses, and nothing more.
#
# Every function takes exactly the arguments the flake gives it (no `...`), so a misspelled
# attribute or argument fails evaluation, as it would against nixpkgs. Derivations build
# offline with the host's /bin/sh (run with --option sandbox false): they record what they
# stand for instead of fetching or compiling anything. The Python environment links the
# host's python3, so `nix develop --command` can run a command in the shell.
{ system, config }:
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
      autoPatchelfIgnoreMissingDeps,
      dontCheckRuntimeDeps,
      pythonImportsCheck,
    }:
    assert format == "wheel";
    assert src ? wheel;
    assert builtins.all isDrv (nativeBuildInputs ++ buildInputs);
    stub "python3.11-${pname}-${version}" { }
    // {
      wheel = src.wheel // { name = pname; };
    };

  python311 = {
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
          "/bin/mkdir -p $out/bin && /bin/ln -s /usr/bin/python3 $out/bin/python3"
        ];
      }
      // {
        wheels = map (p: p.wheel) packages;
      };
  };

  mkShell =
    {
      packages,
      BAZEL_PYTHON,
      REPROSEG_TOOLCHAIN,
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

  runCommand =
    name: env: script:
    assert builtins.attrNames env == [
      "nativeBuildInputs"
      "src"
    ];
    stub name { passthru_script = script; };
in
{
  inherit fetchPypi python311 mkShell runCommand;
  # `nix develop` starts the shell with the flake's nixpkgs' bashInteractive.
  bashInteractive = stub "bash-interactive" {
    args = [
      "-c"
      "/bin/mkdir -p $out/bin && /bin/ln -s /bin/bash $out/bin/bash"
    ];
  };
  autoPatchelfHook = stub "auto-patchelf-hook" { };
  stdenv.cc.cc.lib = stub "gcc-lib" { };
  zlib = stub "zlib" { };
  bazel_7 = stub "bazel-7" { };
  git = stub "git" { };
  qemu-user = stub "qemu-user" { };
  nixfmt-rfc-style = stub "nixfmt" { };
}

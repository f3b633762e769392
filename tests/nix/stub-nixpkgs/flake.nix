{
  description = "A strict stand-in for nixpkgs, for checking reproseg's flake offline";
  outputs = { self }: {
    # `import nixpkgs { ... }` in reproseg's flake reads default.nix.
    legacyPackages.x86_64-linux = import ./default.nix {
      system = "x86_64-linux";
      config = { allowUnfree = true; };
    };
  };
}

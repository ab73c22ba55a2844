#!/usr/bin/env bash
# Build the REAL Timeloop (master 4cf6d4c, `scons --accelergy`) and Accelergy 0.4 (6911d15) with its
# CACTI, NeuroSim, Aladdin and Library plug-ins, outside the repository, from public sources.
#
# Why: coopt's engine is checked against these tools (tests/test_real_tools.py, the reference cases in
# /work/shared/reference/ and tests/reference_data/); this script is how a developer rebuilds them.
# CI never runs it and it downloads nothing: clone the repositories below yourself into $SRC (plain or
# bare clones, each under the name shown), then run it.  Only Debian packages come from the network.
#
#   SRC=$HOME/realtools-src PREFIX=/opt/realtools bash benchmarks/build_real_tools.sh [STEP ...]
#   export PATH=$PREFIX/bin:$PATH        # then timeloop-model, timeloop-mapper, accelergy
#
# Steps (default: all, in this order): apt polylib barvinok timeloop accelergy cacti neurosim plugins check
#
# $SRC/<name>                  repository                                         commit
#   timeloop                   github.com/NVlabs/timeloop                         4cf6d4c (master)
#   barvinok                   github.com/inducer/barvinok (mirror of repo.or.cz)  89c68c7 (0.41.8)
#   polylib                    github.com/vincentloechner/polylib                 49fb017 (barvinok's submodule)
#   accelergy                  github.com/Accelergy-Project/accelergy              6911d15 (0.4)
#   accelergy-cacti-plug-in    github.com/Accelergy-Project/accelergy-cacti-plug-in    291018b
#   cacti                      github.com/HewlettPackard/cacti                    1ffd8df (the plug-in's submodule)
#   accelergy-neurosim-plug-in github.com/Accelergy-Project/accelergy-neurosim-plug-in bf874bc
#   DNN_NeuroSim_V1.3          github.com/neurosim/DNN_NeuroSim_V1.3              b5567ec (the plug-in's submodule)
#   accelergy-aladdin-plug-in  github.com/Accelergy-Project/accelergy-aladdin-plug-in  5e2e126
#   accelergy-library-plug-in  github.com/Accelergy-Project/accelergy-library-plug-in  c9d3128
#
# barvinok is not packaged by Debian 12; it is built against Debian's isl 0.25 and NTL and a polylib
# built here (barvinok needs libpolylibgmp, Debian ships only the 64-bit-integer polylib).
# The machine is shared: everything runs under `nice -n 10` with 2 jobs (JOBS to change).
# Measured 2026-12-07 on a shared 2-core machine: 883 s for every step but apt, from unpacked sources to a
# passing check (Timeloop's compile and LTO link are about 10 of those minutes).
set -euo pipefail

SRC=${SRC:?set SRC to the folder holding the clones listed above}
PREFIX=${PREFIX:-/opt/realtools}
JOBS=${JOBS:-2}
BUILD=${BUILD:-$PREFIX/build}
NICE="nice -n 10"
export PKG_CONFIG_PATH=$PREFIX/lib/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}

# unpack NAME COMMIT DEST [PATH ...]: a clean tree of one commit, or of PATHs in it (works on bare clones)
unpack() {
    local repo=$SRC/$1 commit=$2 dest=$3
    shift 3
    [ -e "$repo" ] || { echo "build_real_tools: missing $repo (clone it first, see the header)" >&2; exit 2; }
    rm -rf "$dest" && mkdir -p "$dest"
    git -C "$repo" archive "$commit" "$@" | tar -x -C "$dest"
}

step_apt() {
    apt-get update
    apt-get install -y --no-install-recommends build-essential scons autoconf automake libtool pkg-config \
        libconfig++-dev libboost-dev libboost-iostreams-dev libboost-serialization-dev libboost-thread-dev \
        libyaml-cpp-dev libncurses-dev libtinfo-dev libgpm-dev libisl-dev libntl-dev libgmp-dev \
        python3-venv git patchelf
}

step_polylib() {
    unpack polylib 49fb01737185f38920cee1a1b0e1463d5f053963 "$BUILD/polylib"
    cd "$BUILD/polylib"
    $NICE ./autogen.sh
    $NICE ./configure --prefix="$PREFIX"
    $NICE make -j"$JOBS"
    make install
}

step_barvinok() {
    unpack barvinok 89c68c74387aace75b91cc4cc4557960dedd154a "$BUILD/barvinok"
    cd "$BUILD/barvinok"
    $NICE autoreconf -i --no-recursive
    $NICE ./configure --prefix="$PREFIX" --with-isl=system --with-polylib=system \
        --with-polylib-prefix="$PREFIX" --with-pet=no --with-pic
    # only the library and its headers: Timeloop links libbarvinok, none of barvinok's programs.  libtool
    # may build it static only; --with-pic lets Timeloop's shared libtimeloop-*.so take it in either case
    $NICE make -j"$JOBS" libbarvinok.la
    make install-libLTLIBRARIES install-pkgincludeHEADERS install-nodist_pkgincludeHEADERS
}

step_timeloop() {
    unpack timeloop 4cf6d4cd043bc2a5d2eb02afa9063d7117a4dc11 "$BUILD/timeloop"
    cd "$BUILD/timeloop"
    ln -sfn ../pat-public/src/pat src/pat
    BARVINOKPATH=$PREFIX $NICE scons --accelergy -j"$JOBS" bin/timeloop-model bin/timeloop-mapper
    mkdir -p "$PREFIX/bin"
    install -m 755 bin/timeloop-model bin/timeloop-mapper "$PREFIX/bin/"
    install -m 755 build/libtimeloop-mapper.so "$PREFIX/lib/"      # the programs link it dynamically
    # Timeloop's SConscript takes no link flags from outside: point the binaries at $PREFIX/lib here
    patchelf --set-rpath "$PREFIX/lib" "$PREFIX/bin/timeloop-model" "$PREFIX/bin/timeloop-mapper" \
        "$PREFIX/lib/libtimeloop-mapper.so"
}

step_accelergy() {
    python3 -m venv "$PREFIX/venv"
    local pip="$PREFIX/venv/bin/pip"
    unpack accelergy 6911d15686ee7efdceba7d95605102df4472ae3a "$BUILD/accelergy"
    $pip install "$BUILD/accelergy"
    mkdir -p "$PREFIX/bin"
    ln -sfn "$PREFIX/venv/bin/accelergy" "$PREFIX/bin/accelergy"
}

step_cacti() {
    local pip="$PREFIX/venv/bin/pip"
    # CACTI: the plug-in ships the cacti binary it builds from its submodule
    unpack accelergy-cacti-plug-in 291018b12cc9cd467168973fc47528670e1480ce "$BUILD/cacti-plug-in"
    unpack cacti 1ffd8dfb10303d306ecd8d215320aea07651e878 "$BUILD/cacti-plug-in/cacti"
    (cd "$BUILD/cacti-plug-in/cacti" && $NICE make -j"$JOBS" && chmod 775 cacti)
    $pip install "$BUILD/cacti-plug-in"
}

step_neurosim() {
    local pip="$PREFIX/venv/bin/pip"
    # NeuroSim: the plug-in's Makefile copies NeuroSIM out of its submodule and builds `main`
    unpack accelergy-neurosim-plug-in bf874bc3c81734f28a44cfa0558512a25d2e90f4 "$BUILD/neurosim-plug-in"
    # only NeuroSIM's C++ sources: the rest of the repository holds large model files the plug-in never uses
    # (a clone without them makes git print "invalid object ... VGG8.pth" here; harmless, the archive is whole)
    unpack DNN_NeuroSim_V1.3 b5567ecdfbb8ef647b6dbd74ba82e6924fcfd586 "$BUILD/neurosim-plug-in/DNN_NeuroSim_V1.3" \
        Inference_pytorch/NeuroSIM
    (cd "$BUILD/neurosim-plug-in" && rm -rf NeuroSim && mkdir NeuroSim \
        && cp -r DNN_NeuroSim_V1.3/Inference_pytorch/NeuroSIM/* NeuroSim/ && cp -rf drop_in/* NeuroSim/ \
        && cd NeuroSim && $NICE make -j"$JOBS")
    $pip install "$BUILD/neurosim-plug-in"
}

step_plugins() {
    local pip="$PREFIX/venv/bin/pip"
    unpack accelergy-aladdin-plug-in 5e2e1263ddcc896ba3b8ce95954d76cdeebe03ab "$BUILD/aladdin-plug-in"
    $pip install "$BUILD/aladdin-plug-in"
    unpack accelergy-library-plug-in c9d312879619e6e64eb6c91b71c9c8276a7b7fa4 "$BUILD/library-plug-in"
    $pip install "$BUILD/library-plug-in"
}

# The build is right when timeloop-model and accelergy reproduce reference runs byte for byte (REFERENCE: the
# folder of shared/reference/ in this project's layout).
step_check() {
    local ref=${REFERENCE:-/work/shared/reference}/model/06-eyeriss-like-convlayer-bestmap
    local out
    out=$(mktemp -d)
    (cd "$out" && PATH=$PREFIX/bin:$PATH "$PREFIX/bin/timeloop-model" \
        "$ref/input.yaml" "$ref/ERT.yaml" "$ref/ART.yaml" > timeloop.log 2>&1) \
        || { echo "build_real_tools: timeloop-model failed, see $out/timeloop.log" >&2; exit 1; }
    if cmp "$out/timeloop-model.stats.txt" "$ref/timeloop-model.stats.txt"; then
        echo "build_real_tools: timeloop-model reproduces $ref/timeloop-model.stats.txt byte for byte"
    else
        echo "build_real_tools: timeloop-model differs from $ref (see $out)" >&2
        exit 1
    fi
    local acc=${REFERENCE:-/work/shared/reference}/accelergy/eyeriss-45nm-glb4096
    (cd "$out" && PATH=$PREFIX/bin:$PATH accelergy "$acc/arch.yaml" "$acc/components.yaml" -o acc > acc.log 2>&1) \
        || { echo "build_real_tools: accelergy failed, see $out/acc.log" >&2; exit 1; }
    if cmp "$out/acc/ERT.yaml" "$acc/ERT.yaml" && cmp "$out/acc/ART.yaml" "$acc/ART.yaml"; then
        echo "build_real_tools: accelergy reproduces $acc/ERT.yaml and ART.yaml byte for byte"
    else
        echo "build_real_tools: accelergy differs from $acc (see $out/acc)" >&2
        exit 1
    fi
}

steps=("$@")
[ ${#steps[@]} -gt 0 ] || steps=(apt polylib barvinok timeloop accelergy cacti neurosim plugins check)
for s in "${steps[@]}"; do
    echo "== build_real_tools: $s"
    ( "step_$s" ) || { echo "build_real_tools: step $s failed" >&2; exit 1; }
done

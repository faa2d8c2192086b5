#!/usr/bin/env bash
# Installs the build into a fresh prefix and uses each binding from there
# alone (no build tree on any path): checks the install layout, the RUNPATHs
# and the Java loader.
# Usage: install_smoke.sh BUILD_DIR "python;java;csharp" [PYTHON]
set -euo pipefail
build=$1
langs=$2
python=${3:-python3}
prefix=$(mktemp -d)
work=$(mktemp -d)
trap 'rm -rf "$prefix" "$work"' EXIT

# Only the library and the bindings (the components a binding user installs).
for component in Runtime Python Java CSharp; do
    cmake --install "$build" --prefix "$prefix" --component "$component" >/dev/null
done
spec='{"preset":"realnvp","dim":2,"layers":2,"hidden":[8]}'
cd "$work"

if [[ ";$langs;" == *";python;"* ]]; then
    pkg=$(dirname "$(find "$prefix" -path '*/flowlib/__init__.py' | head -1)")
    PYTHONPATH=$(dirname "$pkg") "$python" -c "
import flowlib, sys
assert flowlib.__file__.startswith('$prefix'), flowlib.__file__
with flowlib.Flow('$spec') as f:
    print('python:', flowlib.__version__, f.log_prob(flowlib.toy_data('two_moons', 3)))
"
fi

if [[ ";$langs;" == *";java;"* ]]; then
    jar=$(find "$prefix" -name flowlib.jar | head -1)
    cat > Smoke.java <<JAVA
import org.flowlib.Flow;
public class Smoke {
    public static void main(String[] a) throws Exception {
        try (Flow f = new Flow("${spec//\"/\\\"}")) {
            System.out.println("java: " + Flow.version() + " " + f.logProb(Flow.toyData("two_moons", 3, 0))[0]);
        }
    }
}
JAVA
    java -cp "$jar" Smoke.java
fi

if [[ ";$langs;" == *";csharp;"* ]]; then
    dll=$(find "$prefix" -name FlowLib.dll | head -1)
    cat > Smoke.cs <<CS
using FlowLib;
static class Smoke {
    static void Main() {
        using (var f = new Flow("${spec//\"/\\\"}"))
            System.Console.WriteLine("csharp: " + Flow.Version + " " + f.LogProb(Flow.ToyData("two_moons", 3, 0))[0]);
    }
}
CS
    # FlowLib.dll stays where it was installed: mono finds it through
    # MONO_PATH and its native half next to it
    mcs -nologo -r:"$dll" -out:Smoke.exe Smoke.cs
    MONO_PATH=$(dirname "$dll") mono Smoke.exe
fi

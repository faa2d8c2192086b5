// Per-call cost of log_prob on 1 row through the C# binding: the Flow class
// (checks, a new result array, exceptions) and the raw SWIG layer (FlowNative).
// Usage: mono Overhead.exe SPEC CALLS ROUNDS; prints JSON lines.
using System;
using System.Diagnostics;
using System.Globalization;
using FlowLib;

static class Overhead
{
    static double Measure(Action fn, int calls, int rounds)
    {
        for (int w = 0; w < 5; w++)
            for (int i = 0; i < calls; i++) fn();
        var t = new double[rounds];
        for (int r = 0; r < rounds; r++)
        {
            var watch = Stopwatch.StartNew();
            for (int i = 0; i < calls; i++) fn();
            t[r] = watch.Elapsed.TotalMilliseconds * 1e6 / calls;
        }
        Array.Sort(t);
        return t[rounds / 2];
    }

    static void Print(string layer, string call, double ns) =>
        Console.WriteLine("{\"lang\": \"C#\", \"layer\": \"" + layer + "\", \"call\": \"" + call
                          + "\", \"ns\": " + ns.ToString("F1", CultureInfo.InvariantCulture) + "}");

    static void Main(string[] args)
    {
        string spec = args[0];
        int calls = int.Parse(args[1]), rounds = int.Parse(args[2]);
        float[] x = { 0.5f, -0.25f };
        var output = new float[1];
        FlowNative.FlowModelCreate(out IntPtr m, spec, Device.Cpu, 1);
        using (var flow = new Flow(spec, 1))
        {
            Print("Flow", "log_prob 1 row", Measure(() => flow.LogProb(x), calls, rounds));
            Print("raw SWIG", "log_prob 1 row", Measure(() => FlowNative.FlowLogProb(m, x, null, 1, output), calls, rounds));
            Print("raw SWIG", "model_dim", Measure(() => FlowNative.FlowModelDim(m), calls, rounds));
        }
        FlowNative.FlowModelFree(m);
    }
}

// Tests of the C# binding (ctest: bindings_csharp, bindings_csharp_cross).
//   mono FlowTests.exe DIR           all tests
//   mono FlowTests.exe --cross DIR   load every model in DIR
// DIR is the scratch folder shared with the C reference program and the
// other bindings. A plain program (no NUnit: nothing outside Debian's mono).
using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using FlowLib;

static class FlowTests
{
    const string Spec = "{\"preset\":\"realnvp\",\"dim\":2,\"layers\":4,\"hidden\":[16,16]}";
    static int failures;

    static void Test(string name, Action body)
    {
        try
        {
            body();
            Console.WriteLine("ok   " + name);
        }
        catch (Exception e)
        {
            failures++;
            Console.WriteLine("FAIL " + name + ": " + e);
        }
    }

    static void Check(bool condition, string what)
    {
        if (!condition) throw new Exception("check failed: " + what);
    }

    static T Expect<T>(Action body) where T : Exception
    {
        try
        {
            body();
        }
        catch (T e)
        {
            return e;
        }
        catch (Exception e)
        {
            throw new Exception($"expected {typeof(T).Name}, got {e.GetType().Name}: {e.Message}");
        }
        throw new Exception($"expected {typeof(T).Name}, nothing thrown");
    }

    static float[] ReadFloats(string path)
    {
        byte[] bytes = File.ReadAllBytes(path);
        var v = new float[bytes.Length / 4];
        Buffer.BlockCopy(bytes, 0, v, 0, v.Length * 4);   // little-endian host
        return v;
    }

    static void WriteFloats(string path, float[] v)
    {
        var bytes = new byte[v.Length * 4];
        Buffer.BlockCopy(v, 0, bytes, 0, bytes.Length);
        File.WriteAllBytes(path, bytes);
    }

    static bool SameBits(float[] a, float[] b) =>
        a.Length == b.Length && a.Select(BitConverter.SingleToInt32Bits).SequenceEqual(b.Select(BitConverter.SingleToInt32Bits));

    static long RssBytes() => long.Parse(File.ReadAllText("/proc/self/statm").Split(' ')[1]) * 4096;

    static int Main(string[] args)
    {
        bool cross = args.Length == 2 && args[0] == "--cross";
        string dir = args[args.Length - 1];
        if (cross) Test("models from every language", () => CrossCheck(dir));
        else AllTests(dir);
        Console.WriteLine(failures == 0 ? "all passed" : failures + " failed");
        return failures == 0 ? 0 : 1;
    }

    static void CrossCheck(string dir)
    {
        float[] data = ReadFloats(Path.Combine(dir, "data.f32"));
        var langs = new List<string>();
        foreach (string model in Directory.GetFiles(dir, "model_*.safetensors"))
        {
            string name = Path.GetFileNameWithoutExtension(model);
            string lang = name.Substring("model_".Length);
            float[] want = ReadFloats(Path.Combine(dir, "logprob_" + lang + ".f32"));
            using (var f = Flow.Load(model))
                Check(SameBits(f.LogProb(data), want), "log_prob of the model saved by " + lang);
            langs.Add(lang);
        }
        Check(langs.Contains("c") && langs.Count >= 2, "only " + string.Join(",", langs) + " found");
    }

    static void AllTests(string dir)
    {
        Test("version and raw layer", () =>
        {
            Check(Flow.Version == FlowNative.FlowVersionString(), "version");
            Check(Flow.DeviceAvailable(Device.Cpu), "cpu available");
            Check(FlowNative.FlowStatusString(Status.Spec) == "FLOW_ERR_SPEC", "status string");
            Flow.SetNumThreads(1);
        });

        Test("train a few steps", () =>
        {
            using (var f = new Flow(Spec, 3))
            {
                float[] x = Flow.ToyData("two_moons", 128, 0);
                for (int i = 0; i < 5; i++) Check(!float.IsNaN(f.TrainStep(x)), "finite loss");
                Check(f.StepCount == 5, "step count");
                Check(f.Dim == 2 && f.ContextDim == 0 && f.ParamCount > 0, "properties");
                float[] lp = f.LogProb(x);
                Check(lp.Length == 128, "log_prob");
                Check(SameBits(f.LogProb(Flow.ToRows(x, 2)), lp), "2-D overload");
                float[] z = f.Forward(x, out float[] ld);
                float[] back = f.Inverse(z, out float[] ldInv);
                for (int i = 0; i < x.Length; i++) Check(Math.Abs(back[i] - x[i]) < 1e-4, "round trip");
                float loss = f.LossGrad(x, out float[] pg, out float[] xg);
                Check(!float.IsNaN(loss) && pg.Length == f.ParamCount && xg.Length == x.Length, "loss grad");
                Check(f.Spec.Contains("affine_coupling"), "spec");
            }
        });

        Test("reference model bit for bit", () =>
        {
            float[] data = ReadFloats(Path.Combine(dir, "data.f32"));
            using (var f = Flow.Load(Path.Combine(dir, "model_c.safetensors")))
                Check(SameBits(f.LogProb(data), ReadFloats(Path.Combine(dir, "logprob_c.f32"))), "log_prob differs from C");
        });

        Test("sample with a seed twice", () =>
        {
            using (var f = new Flow(Spec, 3))
            {
                f.TrainStep(Flow.ToyData("two_moons", 128, 0));
                float[] a = f.Sample(100, 42), b = f.Sample(100, 42);
                Check(a.Length == 200 && SameBits(a, b), "same seed, same samples");
                Check(!SameBits(a, f.Sample(100, 43)), "other seed, other samples");
            }
        });

        Test("save, load, bytes, clone", () =>
        {
            string p = Path.GetTempFileName();
            try
            {
                using (var f = new Flow(Spec, 5))
                {
                    float[] x = Flow.ToyData("two_moons", 64, 1);
                    f.TrainStep(x);
                    f.Save(p);
                    using (var g = Flow.Load(p))
                    using (var h = Flow.FromBytes(f.ToBytes()))
                    using (var c = f.Clone())
                    {
                        Check(SameBits(f.LogProb(x), g.LogProb(x)), "file");
                        Check(SameBits(f.LogProb(x), h.LogProb(x)), "bytes");
                        Check(SameBits(f.LogProb(x), c.LogProb(x)), "clone");
                    }
                    float[] w = f.GetParams();
                    f.SetParams(w);
                    Check(SameBits(w, f.GetParams()), "params");
                }
            }
            finally
            {
                File.Delete(p);
            }
        });

        Test("leave a model for the other languages", () =>
        {
            float[] data = ReadFloats(Path.Combine(dir, "data.f32"));
            using (var f = new Flow(Spec.Replace("}", ",\"batch_norm\":true}"), 13))
            {
                for (int step = 0; step < 10; step++) f.TrainStep(Flow.ToyData("two_moons", 128, (ulong)step));
                f.Save(Path.Combine(dir, "model_csharp.safetensors"));
                WriteFloats(Path.Combine(dir, "logprob_csharp.f32"), f.LogProb(data));
            }
        });

        Test("errors", () =>
        {
            var e = Expect<FlowSpecException>(() => new Flow("{\"preset\":\"realnvp\",\"dim\":2,\"bogus\":1}"));
            Check(e.Message.Contains("bogus") && e.Status == Status.Spec, "spec message: " + e.Message);
            Expect<FlowSpecException>(() => new Flow("{not json"));
            var f = new Flow(Spec);
            Expect<ArgumentException>(() => f.LogProb(new float[3]));
            Expect<ArgumentException>(() => f.LogProb(new float[0]));
            Expect<ArgumentException>(() => f.LogProb(new float[2, 3]));
            Expect<ArgumentException>(() => f.LogProb(new float[4], new float[2]));
            float[] x = Flow.ToyData("two_moons", 4, 0);
            x[3] = float.NaN;
            var nan = Expect<FlowInvalidArgumentException>(() => f.LogProb(x));
            Check(nan.Message.Length > 0, "NaN message");
            Expect<FlowIOException>(() => Flow.Load(Path.Combine(dir, "missing.safetensors")));
            byte[] good = f.ToBytes();
            string corrupt = Path.Combine(dir, "corrupt_csharp.safetensors.bin");
            File.WriteAllBytes(corrupt, good.Take(good.Length / 2).ToArray());
            Expect<FlowFormatException>(() => Flow.Load(corrupt));
            Expect<FlowFormatException>(() => Flow.FromBytes(good.Take(40).ToArray()));
            float[] w = f.GetParams();
            for (int i = 0; i < w.Length; i++) w[i] = i % 3 == 0 ? 1e30f : -1e30f;
            f.SetParams(w);
            Expect<FlowNumericException>(() => f.TrainStep(Flow.ToyData("two_moons", 4, 0)));
            Check(f.StepCount == 0, "failed step leaves the model unchanged");
            Expect<FlowException>(() => Flow.ToyData("no_such_set", 4, 0));
            f.Dispose();
            f.Dispose();
            Expect<ObjectDisposedException>(() => f.LogProb(new float[2]));
        });

        Test("no leak over 10,000 create/free cycles", () =>
        {
            const string spec = "{\"preset\":\"realnvp\",\"dim\":2,\"layers\":4,\"hidden\":[64,64]}";
            float[] x = Flow.ToyData("two_moons", 4, 0);
            Action cycles = () =>
            {
                for (int i = 0; i < 1000; i++)
                {
                    if (i % 2 == 0)
                        using (var f = new Flow(spec, (ulong)i)) f.LogProb(x);
                    else
                        new Flow(spec, (ulong)i).LogProb(x);   // left to the finalizer
                }
                GC.Collect();
                GC.WaitForPendingFinalizers();
            };
            cycles();   // warm-up: JIT, allocator pools, GC heap
            long before = RssBytes();
            for (int k = 0; k < 10; k++) cycles();
            long grown = RssBytes() - before;
            // one leaked model of this size is ~70 kB: a leak would be ~700 MB
            Check(grown < (32L << 20), $"RSS grew by {grown >> 20} MB");
        });
    }
}

using SharpFuzz;
using VirtioSharp.Fuzz.Targets;

// VirtioSharp.Fuzz TARGET            AFL++ persistent mode (one process, many inputs): run under afl-fuzz, see fuzz/run.sh
// VirtioSharp.Fuzz --seed TARGET DIR  writes TARGET's seed corpus into DIR
// VirtioSharp.Fuzz --replay TARGET FILE...  runs files through TARGET once each, outside AFL (triage)
// VirtioSharp.Fuzz --bench TARGET SECONDS FILE...  runs the files in turn for SECONDS and prints exec/s (profiling)
if (args.Length >= 3 && args[0] == "--seed" && FuzzTargets.All.TryGetValue(args[1], out var seeded))
{
    Directory.CreateDirectory(args[2]);
    foreach (var (name, input) in seeded.Seeds()) File.WriteAllBytes(Path.Combine(args[2], name), input);
    return 0;
}
if (args.Length >= 3 && args[0] == "--replay" && FuzzTargets.All.TryGetValue(args[1], out var replayed))
{
    foreach (var file in args.Skip(2))
    {
        replayed.Run(File.ReadAllBytes(file));
        Console.WriteLine($"ok {file}");
    }
    return 0;
}
if (args.Length >= 4 && args[0] == "--bench" && FuzzTargets.All.TryGetValue(args[1], out var benched))
{
    var inputs = args.Skip(3).Select(File.ReadAllBytes).ToArray();
    foreach (var input in inputs) benched.Run(input);   // JIT and one-time setup outside the clock
    var cpu = System.Diagnostics.Process.GetCurrentProcess().TotalProcessorTime;
    var clock = System.Diagnostics.Stopwatch.StartNew();
    long runs = 0;
    while (clock.Elapsed.TotalSeconds < double.Parse(args[2], System.Globalization.CultureInfo.InvariantCulture))
        benched.Run(inputs[runs++ % inputs.Length]);
    cpu = System.Diagnostics.Process.GetCurrentProcess().TotalProcessorTime - cpu;
    Console.WriteLine($"{args[1]}: {runs} runs in {clock.Elapsed.TotalSeconds:F1} s, {runs / clock.Elapsed.TotalSeconds:F0} exec/s, {cpu.TotalMicroseconds / runs:F0} us CPU each");
    return 0;
}
if (args.Length == 1 && FuzzTargets.All.TryGetValue(args[0], out var target))
{
    var run = target.Run;
    // Inputs past 64 KiB are cut: every target bounds what it decodes far below that.
    var buffer = new byte[64 * 1024];
    Fuzzer.Run(stream =>
    {
        int n = 0, got;
        while (n < buffer.Length && (got = stream.Read(buffer, n, buffer.Length - n)) > 0) n += got;
        run(buffer.AsSpan(0, n));
    });
    return 0;
}
Console.Error.WriteLine($"usage: VirtioSharp.Fuzz TARGET | --seed TARGET DIR | --replay TARGET FILE... | --bench TARGET SECONDS FILE...\ntargets: {string.Join(", ", FuzzTargets.All.Keys)}");
return 2;

using System.Globalization;

namespace VirtioSharp.BlkLoad;

/// <summary>What one run does; parsed from the command line by hand (no option library on the measured path's process).</summary>
internal sealed record LoadOptions
{
    public string Socket { get; init; } = "";
    public Pattern Pattern { get; init; } = Pattern.RandRead;
    public int BlockBytes { get; init; } = 4096;
    public int Depth { get; init; } = 1;
    public int Queues { get; init; } = 1;
    public double RuntimeSeconds { get; init; } = 5;
    public double WarmupSeconds { get; init; } = 1;
    public int BackendPid { get; init; }
    public double SpinMicroseconds { get; init; } = 50;
    public ushort QueueSize { get; init; } = 128;
    public bool Indirect { get; init; } = true;
    public string Label { get; init; } = "";
    /// <summary>--dirty-log: ask the back-end to log every write as during a live migration (VHOST_F_LOG_ALL).</summary>
    public bool DirtyLog { get; init; }

    public const string Usage =
        "usage: BlkLoad --socket PATH [--pattern randread|randwrite|seqread] [--bs BYTES] [--qd N] [--queues N]\n" +
        "               [--runtime S] [--warmup S] [--backend-pid PID] [--spin-us US] [--queue-size N] [--no-indirect] [--label TEXT] [--dirty-log]\n" +
        "  --qd is per queue; each queue has its own driver thread. --backend-pid: the process whose CPU time is charged per request.";

    public static LoadOptions Parse(string[] args)
    {
        var o = new LoadOptions();
        for (int i = 0; i < args.Length; i++)
        {
            string Next() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"{args[i]} needs a value");
            int Int() => int.Parse(Next(), CultureInfo.InvariantCulture);
            double Dbl() => double.Parse(Next(), CultureInfo.InvariantCulture);
            o = args[i] switch
            {
                "--socket" => o with { Socket = Next() },
                "--pattern" => o with { Pattern = ParsePattern(Next()) },
                "--bs" => o with { BlockBytes = Int() },
                "--qd" => o with { Depth = Int() },
                "--queues" => o with { Queues = Int() },
                "--runtime" => o with { RuntimeSeconds = Dbl() },
                "--warmup" => o with { WarmupSeconds = Dbl() },
                "--backend-pid" => o with { BackendPid = Int() },
                "--spin-us" => o with { SpinMicroseconds = Dbl() },
                "--queue-size" => o with { QueueSize = (ushort)Int() },
                "--no-indirect" => o with { Indirect = false },
                "--label" => o with { Label = Next() },
                "--dirty-log" => o with { DirtyLog = true },
                _ => throw new ArgumentException($"unknown option {args[i]}"),
            };
        }
        if (o.Socket.Length == 0) throw new ArgumentException("--socket is required");
        if (o.BlockBytes < 512 || o.BlockBytes % 512 != 0) throw new ArgumentException("--bs must be a multiple of 512");
        if (o.Depth < 1 || o.Queues < 1 || o.Queues > 16) throw new ArgumentException("--qd must be >= 1 and --queues 1..16");
        // Without indirect tables a request takes 3 descriptors (header, data, status).
        if (o.Depth * (o.Indirect ? 1 : 3) > o.QueueSize) throw new ArgumentException("--qd does not fit in --queue-size");
        return o;
    }

    private static Pattern ParsePattern(string s) => s switch
    {
        "randread" => Pattern.RandRead,
        "randwrite" => Pattern.RandWrite,
        "seqread" => Pattern.SeqRead,
        _ => throw new ArgumentException($"unknown pattern {s}"),
    };
}

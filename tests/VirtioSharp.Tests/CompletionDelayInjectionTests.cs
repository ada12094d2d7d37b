using System.Diagnostics;
using System.Text.RegularExpressions;
using VirtioSharp.Cli;
using VirtioSharp.Devices;
using VirtioSharp.Devices.Block;
using VirtioSharp.Drivers;
using VirtioSharp.Drivers.Block;
using VirtioSharp.Memory;
using VirtioSharp.Platform;
using VirtioSharp.Queues;
using VirtioSharp.Spec;
using VirtioSharp.Testing;
using VirtioSharp.Tests.Support;
using VirtioSharp.VhostUser.Frontend;

namespace VirtioSharp.Tests;

using Mem = DeviceMemory<TranslatorRef, PortRef>;

/// <summary>
/// The crash-test fault injection (<see cref="CompletionDelayInjection"/>, `vhost-user-blk --inject-delay-us`): requests
/// stay popped and unprocessed for the delay, then complete normally; bad settings are refused. The real-guest crash
/// cases that rely on it are InteropTests' resubmit*.
/// </summary>
public class CompletionDelayInjectionTests
{
    private static readonly TimeSpan Limit = TimeSpan.FromSeconds(60);

    private static byte[] Random(int n, int seed)
    {
        var b = new byte[n];
        new Random(seed).NextBytes(b);
        return b;
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void HeldRequestsStayInFlightUnprocessedUntilTheDelayThenComplete(bool packed)
    {
        var delay = TimeSpan.FromMilliseconds(150);
        var reports = new List<(int Queue, int Held)>();
        using var rig = new SimRig(DmaMode.Direct);
        var backend = new MemoryBackend(1 << 20);
        var device = new BlockDevice<Mem>(backend, new BlockDeviceOptions
        {
            OfferPacked = packed,
            InjectCompletionDelay = new CompletionDelayInjection { Delay = delay, ReportAt = 8, Held = (q, n) => reports.Add((q, n)) },
        });
        rig.Add(device, SimTransport.Pci);
        using var driver = BlkDriver.Probe(rig.DriverTransport(), rig.Environment());
        rig.Machine.Deferred = true;
        var p = rig.Platform;
        const int n = 16, len = 4096;
        ulong area = p.Allocator.Allocate(n * len);
        var expected = Random(n * len, 3);
        p.Cpu.Write(area, expected);
        var sw = Stopwatch.StartNew();
        var ops = Enumerable.Range(0, n).Select(i => driver.Submit(BlkRequestType.Out, (ulong)(i * 8), [new BufferSegment(area + (ulong)(i * len), len)])).ToList();
        rig.Machine.Poll();   // the device pops every request and holds it

        Assert.Equal([(0, n)], reports);
        Assert.Equal(n, driver.InFlight);
        Assert.All(ops, o => Assert.False(o.IsCompleted));
        Assert.True(backend.Data.IndexOfAnyExcept((byte)0) < 0, "a held write reached the disk before its delay");
        Assert.Equal(0, device.Stats.Writes);

        while (!driver.WaitAll()) Assert.True(sw.Elapsed < Limit, "held requests never completed");
        Assert.True(sw.Elapsed >= delay, $"requests completed after {sw.Elapsed.TotalMilliseconds} ms, before the {delay.TotalMilliseconds} ms delay");
        Assert.All(ops, o => Assert.Equal(BlkStatus.Ok, o.Status));
        Assert.Equal(expected, backend.Data[..(n * len)].ToArray());
        Assert.Equal(n, device.Stats.Writes);
        Assert.Null(rig.Slot!.Core.NeedsResetReason);
        p.Allocator.Free(area, n * len);
    }

    [Fact]
    public void ANonPositiveDelayOrReportCountIsRefused()
    {
        var backend = new MemoryBackend(1 << 20);
        Assert.Throws<ArgumentOutOfRangeException>(() => new BlockDevice<Mem>(backend,
            new BlockDeviceOptions { InjectCompletionDelay = new CompletionDelayInjection { Delay = TimeSpan.Zero } }));
        Assert.Throws<ArgumentOutOfRangeException>(() => new BlockDevice<Mem>(backend,
            new BlockDeviceOptions { InjectCompletionDelay = new CompletionDelayInjection { Delay = TimeSpan.FromMilliseconds(1), ReportAt = 0 } }));
    }

    private static (int Rc, string Out, string Err) Run(params string[] args) => InProcessCli.Run(args);

    [Theory]
    [InlineData("--inject-delay-us", "-1")]
    [InlineData("--inject-report-held", "0")]
    public void BadInjectionOptionsExitWithTwoAndSayWhy(string option, string value)
    {
        var dir = Directory.CreateTempSubdirectory("vs-inject-").FullName;
        try
        {
            string image = Path.Combine(dir, "disk.img"), sock = Path.Combine(dir, "s");
            File.WriteAllBytes(image, new byte[1 << 16]);
            var (rc, _, e) = Run("vhost-user-blk", "--socket-path", sock, "--blk-file", image, option, value);
            Assert.Equal(2, rc);
            Assert.Contains(option, e);
            Assert.False(File.Exists(sock));
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void TheHelpSaysTheOptionIsFaultInjectionAndOffByDefault()
    {
        var (rc, o, _) = Run("vhost-user-blk", "--help");
        Assert.Equal(0, rc);
        Assert.Matches(new Regex(@"--inject-delay-us[^\n]*\n?[^\n]*FAULT INJECTION"), o);
        Assert.Contains("off", o);
    }

    /// <summary>
    /// The real daemon with the injection: it says so at start, logs the "holds N requests" cue a crash test waits for
    /// while the requests are still in flight, and then completes them.
    /// </summary>
    [Fact]
    public void TheDaemonHoldsRequestsLogsTheCueAndThenCompletesThem()
    {
        var dir = Directory.CreateTempSubdirectory("vs-inject-cli-").FullName;
        try
        {
            string image = Path.Combine(dir, "disk.img"), sock = Path.Combine(dir, "blk.sock");
            File.WriteAllBytes(image, new byte[1 << 20]);
            using var cli = CliProcess.Start("vhost-user-blk", "--socket-path", sock, "--blk-file", image,
                "--inject-delay-us", "400000", "--inject-report-held", "4");
            cli.WaitForOutput("serving", Limit);
            Assert.Contains("fault injection: every request is held 400000 us", cli.StdOut);
            const int n = 8, len = 4096;
            var data = Random(n * len, 5);
            using (var fe = VhostUserFrontend.Connect(sock, DeviceId.Block, 16 << 20))
            using (var drv = BlkDriver.Probe(fe, fe.Environment()))
            {
                var p = fe.Platform;
                ulong area = p.Allocator.Allocate(n * len);
                p.Cpu.Write(area, data);
                var ops = Enumerable.Range(0, n).Select(i => drv.Submit(BlkRequestType.Out, (ulong)(i * 8), [new BufferSegment(area + (ulong)(i * len), len)])).ToList();
                cli.WaitForOutput("fault injection: vring 0 holds", Limit);
                Assert.Contains(ops, o => !o.IsCompleted);
                var sw = Stopwatch.StartNew();
                while (!drv.WaitAll()) Assert.True(sw.Elapsed < Limit, "held requests never completed");
                Assert.All(ops, o => Assert.Equal(BlkStatus.Ok, o.Status));
            }
            cli.WaitForOutput("waiting for the next front-end", Limit);
            using (var kill = Process.Start("kill", ["-TERM", cli.Id.ToString()])) kill.WaitForExit();
            Assert.Equal(0, cli.WaitForExit(Limit));
            Assert.Matches(new Regex(@"vring 0 holds ([4-8]) requests in flight"), cli.StdOut);
            Assert.Equal(data, File.ReadAllBytes(image).AsSpan(0, n * len).ToArray());
        }
        finally { Directory.Delete(dir, true); }
    }
}

using System.Globalization;
using VirtioSharp.Drivers;
using VirtioSharp.Spec;
using VirtioSharp.Tests.Support;
using VirtioSharp.VhostUser.Frontend;

namespace VirtioSharp.Tests;

/// <summary>
/// The metrics as an operator reads them: the real <c>dotnet-counters</c> (a NuGet dotnet tool, installed into a
/// temporary tool path) collects from a running <c>virtio-sharp vhost-user-rng</c> while a front-end reads entropy,
/// and must see non-zero rates of the device's and the vhost-user host's counters.
/// </summary>
public sealed class DotnetCountersTests : IDisposable
{
    private static readonly TimeSpan Limit = TimeSpan.FromSeconds(30);
    private readonly string _dir = Directory.CreateTempSubdirectory("vs-counters.").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void DotnetCountersSeesLiveDeviceAndVhostCountersDuringASession()
    {
        string dotnetCounters = DotnetCountersTool.Path;
        string sock = Path.Combine(_dir, "rng.sock"), csv = Path.Combine(_dir, "counters.csv");
        using var cli = CliProcess.Start("vhost-user-rng", "--socket-path", sock);
        cli.WaitForOutput("serving entropy", Limit);
        using var stop = new CancellationTokenSource();
        long read = 0;
        var reader = new Thread(() =>
        {
            using var fe = VhostUserFrontend.Connect(sock, DeviceId.Entropy, 16 << 20);
            using var drv = EntropyDriver.Probe(fe, fe.Environment());
            var buf = new byte[4096];
            while (!stop.IsCancellationRequested) { Interlocked.Add(ref read, drv.Read(buf)); Thread.Sleep(5); }
        }) { IsBackground = true };
        reader.Start();
        ChildProcess.Result collect;
        try
        {
            collect = ChildProcess.Run(dotnetCounters,
                ["collect", "-p", cli.Id.ToString(CultureInfo.InvariantCulture), "--counters", "VirtioSharp.Rng,VirtioSharp.VhostUser",
                 "--refresh-interval", "1", "--duration", "00:00:00:06", "--format", "csv", "-o", csv], TimeSpan.FromMinutes(2), _dir);
        }
        finally
        {
            stop.Cancel();
            Assert.True(reader.Join(Limit), "the entropy reader did not stop");
        }
        Assert.True(collect.ExitCode == 0, $"dotnet-counters collect failed:\n{collect.Output}\n{cli.Output}");
        Assert.True(Interlocked.Read(ref read) > 0, "the front-end read no entropy");
        double Max(string provider, string counter) => DotnetCountersTool.Max(csv, provider, counter);
        string all = string.Join('\n', File.ReadAllLines(csv).Take(40));
        Assert.True(Max("VirtioSharp.Rng", "virtio.rng.bytes") > 0, $"no non-zero virtio.rng.bytes rate:\n{all}");
        Assert.True(Max("VirtioSharp.Rng", "virtio.rng.requests") > 0, $"no non-zero virtio.rng.requests rate:\n{all}");
        Assert.True(Max("VirtioSharp.VhostUser", "vhost_user.kicks") > 0, $"no non-zero vhost_user.kicks rate:\n{all}");
        Assert.True(Max("VirtioSharp.VhostUser", "vhost_user.connections.active") == 1, $"vhost_user.connections.active is not 1:\n{all}");
    }
}

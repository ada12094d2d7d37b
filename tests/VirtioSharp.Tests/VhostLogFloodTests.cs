using System.Buffers.Binary;
using VirtioSharp.Tests.Support;
using VirtioSharp.VhostUser.Backend;
using VirtioSharp.VhostUser.Protocol;

namespace VirtioSharp.Tests;

/// <summary>A front-end cannot flood the back-end's log: lines it causes are rate-limited and what was dropped is counted.</summary>
public class VhostLogFloodTests
{
    [Fact]
    public void MessagesThatEachLogAreRateLimitedAndTheDropIsReported()
    {
        using var rig = new VhostRig(options: new VhostUserBackendOptions { LogLinesPerSecond = 5, LogBurst = 20 });
        using var c = rig.Connect();
        const int n = 500;
        for (int i = 0; i < n; i++)
        {
            // GET_VRING_BASE on a ring never started: answered, and logged as suspicious every time.
            c.Send(VhostRequest.GetVringBase, RawClient.State(0, 0));
            var r = c.Receive();
            Assert.NotNull(r);
            Assert.Equal(0u, BinaryPrimitives.ReadUInt32LittleEndian(r!.Value.Body.AsSpan(4)));
        }
        int logged = rig.Log.Lines.Count(l => l.Contains("never started"));
        Assert.InRange(logged, 1, 40);
        Thread.Sleep(1000);
        c.Send(VhostRequest.GetVringBase, RawClient.State(0, 0));
        Assert.NotNull(c.Receive());
        var report = rig.Log.Lines.LastOrDefault(l => l.Contains("log lines suppressed"));
        Assert.NotNull(report);
        long dropped = long.Parse(report!.Split(' ', StringSplitOptions.RemoveEmptyEntries).First(w => w.All(char.IsDigit)));
        Assert.True(dropped >= n - 40, $"only {dropped} lines reported dropped: {report}");
    }
}

using System.Buffers.Binary;
using System.Text.Json;
using System.Text.RegularExpressions;
using VirtioSharp.Drivers.Net;
using VirtioSharp.Spec;
using VirtioSharp.Tests.Support;
using VirtioSharp.VhostUser.Frontend;

namespace VirtioSharp.Tests;

/// <summary>`virtio-sharp vhost-user-net` on the daemon host: capabilities, bad options, and a run on a TAP in a namespace.</summary>
public class NetDaemonTests
{
    private static readonly TimeSpan Limit = TimeSpan.FromSeconds(60);

    [Fact]
    public void PrintsNetCapabilities()
    {
        var (rc, o, e) = InProcessCli.Run("vhost-user-net", "--print-capabilities");
        Assert.Equal(0, rc);
        Assert.Equal("", e);
        using var doc = JsonDocument.Parse(o);
        Assert.Equal("net", doc.RootElement.GetProperty("type").GetString());
    }

    [Theory]
    [InlineData("--mtu", "50", "--mtu")]
    [InlineData("--queue-pairs", "0", "--queue-pairs")]
    [InlineData("--mac", "01:02:03:04:05:06", "--mac")]     // multicast
    [InlineData("--mac", "52:54:00:12:34", "--mac")]
    [InlineData("--queue-size", "100", "--queue-size")]
    [InlineData("--tap", "no/slash", "--tap")]
    public void BadOptionsExitWithTwoAndSayWhy(string option, string value, string named)
    {
        string[] args = option == "--tap" ? ["vhost-user-net", "--socket-path", "/tmp/vs-net-never.sock", option, value]
            : ["vhost-user-net", "--socket-path", "/tmp/vs-net-never.sock", "--tap", "vsnever0", option, value];
        var (rc, _, e) = InProcessCli.Run(args);
        Assert.Equal(2, rc);
        Assert.Contains(named, e);
        Assert.False(File.Exists("/tmp/vs-net-never.sock"));
    }

    [Fact]
    public void WithoutATapItRefusesToStart()
    {
        var (rc, _, e) = InProcessCli.Run("vhost-user-net", "--socket-path", "/tmp/vs-net-never.sock");
        Assert.Equal(2, rc);
        Assert.Contains("--tap", e);
    }

    [Fact]
    public void TapAndLoopbackTogetherAreRefused()
    {
        var (rc, _, e) = InProcessCli.Run("vhost-user-net", "--socket-path", "/tmp/vs-net-never.sock", "--tap", "vsnever0", "--loopback");
        Assert.Equal(2, rc);
        Assert.Contains("--loopback", e);
        Assert.False(File.Exists("/tmp/vs-net-never.sock"));
    }

    [Fact]
    public void TheDaemonPingsANamespaceThroughItsTapAndCountsIt()
    {
        var dir = Directory.CreateTempSubdirectory("vs-net-cli-").FullName;
        using var ns = new NetNamespace();
        string tapName = "vsd" + Guid.NewGuid().ToString("N")[..8];
        try
        {
            string sock = Path.Combine(dir, "net.sock");
            using var cli = CliProcess.Start("vhost-user-net", "--socket-path", sock, "--tap", tapName, "--mtu", "1500");
            cli.WaitForOutput("serving virtio-net", Limit);
            // The daemon created the TAP here; it keeps working after moving into the test's namespace.
            ns.TakeInterface(tapName, "10.77.0.1/24");
            ns.In("neigh", "add", "10.77.0.2", "lladdr", "52:54:00:12:34:56", "dev", tapName);
            var hostMac = Icmp.MacOf(ns, tapName);
            using (var fe = VhostUserFrontend.Connect(sock, DeviceId.Network, 16 << 20))
            using (var drv = NetDriver.Probe(fe, fe.Environment(pollBudget: 2000)))
            {
                Assert.Equal(1500, drv.Mtu);
                for (ushort seq = 1; seq <= 2; seq++)
                {
                    Assert.True(drv.Send(Icmp.EchoRequest(hostMac, seq, 200, icmpChecksum: true)));
                    NetDriver.ReceivedFrame reply;
                    do reply = drv.Receive();
                    while (!Icmp.IsIcmp4(reply.Frame));
                    Assert.Equal(seq, BinaryPrimitives.ReadUInt16BigEndian(reply.Frame.AsSpan(40)));
                }
            }
            cli.WaitForOutput("waiting for the next front-end", Limit);
            using (var kill = System.Diagnostics.Process.Start("kill", ["-TERM", cli.Id.ToString()])) kill.WaitForExit();
            Assert.Equal(0, cli.WaitForExit(Limit));
            var m = Regex.Match(cli.StdOut, @"final stats: connections 1 tx-packets (\d+) tx-bytes \d+ rx-packets (\d+) ");
            Assert.True(m.Success, cli.Output);
            Assert.Equal(2, int.Parse(m.Groups[1].Value));
            Assert.True(int.Parse(m.Groups[2].Value) >= 2);
        }
        finally { Directory.Delete(dir, true); }
    }

    [Theory]
    [InlineData("--switch", "sw0")]                                               // one socket
    [InlineData("--switch", "sw0", "--socket-path", "/tmp/vs-net-never2.sock", "--tap", "vsnever0")]
    [InlineData("--tap", "vsnever0", "--socket-path", "/tmp/vs-net-never2.sock")] // a TAP serves one guest
    [InlineData("--switch", "sw0", "--socket-path", "/tmp/vs-net-never2.sock", "--mac-table-size", "100")]
    [InlineData("--switch", "sw0", "--socket-path", "/tmp/vs-net-never2.sock", "--multi-queue-tap")]
    [InlineData("--switch", "sw0", "--socket-path", "/tmp/vs-net-never.sock")]    // the same socket twice
    [InlineData("--loopback", "--tap", "vsnever0")]                                // two packet ports
    [InlineData("--loopback", "--switch", "sw0", "--socket-path", "/tmp/vs-net-never2.sock")]
    [InlineData("--loopback", "--socket-path", "/tmp/vs-net-never2.sock")]        // a loopback serves one guest
    public void SwitchOptionsThatCannotWorkExitWithTwo(params string[] more)
    {
        var (rc, _, e) = InProcessCli.Run(["vhost-user-net", "--socket-path", "/tmp/vs-net-never.sock", .. more]);
        Assert.Equal(2, rc);
        Assert.Contains("error:", e);
        Assert.False(File.Exists("/tmp/vs-net-never.sock"));
        Assert.False(File.Exists("/tmp/vs-net-never2.sock"));
    }

    [Fact]
    public void OnlyTheNetCommandTakesSeveralSockets()
    {
        var (rc, _, e) = InProcessCli.Run("vhost-user-rng", "--socket-path", "/tmp/vs-rng-never.sock", "--socket-path", "/tmp/vs-rng-never2.sock");
        Assert.NotEqual(0, rc);
        Assert.False(File.Exists("/tmp/vs-rng-never.sock"));
        Assert.NotEmpty(e);
    }

    [Fact]
    public void TwoGuestsTalkThroughTheSwitchAndTheFinalStatsCountEachPort()
    {
        var dir = Directory.CreateTempSubdirectory("vs-net-sw-").FullName;
        try
        {
            string a = Path.Combine(dir, "a.sock"), b = Path.Combine(dir, "b.sock");
            using var cli = CliProcess.Start("vhost-user-net", "--switch", "swt", "--socket-path", a, "--socket-path", b);
            cli.WaitForOutput("serving virtio-net on switch swt (2 ports", Limit);
            byte[] macA = [0x52, 0x54, 0, 0, 0, 0x0a], macB = [0x52, 0x54, 0, 0, 0, 0x0b], bcast = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
            static byte[] Frame(byte[] dst, byte[] src, int len, byte fill)
            {
                var f = new byte[len];
                Array.Fill(f, fill);
                dst.CopyTo(f, 0);
                src.CopyTo(f, 6);
                return f;
            }
            using (var feA = VhostUserFrontend.Connect(a, DeviceId.Network, 16 << 20))
            using (var drvA = NetDriver.Probe(feA, feA.Environment(pollBudget: 2000)))
            using (var feB = VhostUserFrontend.Connect(b, DeviceId.Network, 16 << 20))
            using (var drvB = NetDriver.Probe(feB, feB.Environment(pollBudget: 2000)))
            {
                var hello = Frame(bcast, macA, 60, 1);
                Assert.True(drvA.Send(hello));
                Assert.Equal(hello, drvB.Receive().Frame);
                for (int i = 0; i < 10; i++)
                {
                    var reply = Frame(macA, macB, 1000 + i, (byte)(2 + i));
                    Assert.True(drvB.Send(reply));
                    Assert.Equal(reply, drvA.Receive().Frame);
                }
            }
            using (var kill = System.Diagnostics.Process.Start("kill", ["-TERM", cli.Id.ToString()])) kill.WaitForExit();
            Assert.Equal(0, cli.WaitForExit(Limit));
            var stats = Regex.Match(cli.StdOut, @"final stats: (.*)").Groups[1].Value;
            long Stat(string key)
            {
                var m = Regex.Match(stats, $@"(?:^| ){Regex.Escape(key)} (\d+)");
                Assert.True(m.Success, $"no {key} in: {cli.Output}");
                return long.Parse(m.Groups[1].Value);
            }
            Assert.Equal(2, Stat("connections"));
            Assert.Equal((1, 60, 10, 10 * 1000 + 45, 1), (Stat("port0-tx-packets"), Stat("port0-tx-bytes"), Stat("port0-rx-packets"), Stat("port0-rx-bytes"), Stat("port0-floods")));
            Assert.Equal((10, 1, 0), (Stat("port1-tx-packets"), Stat("port1-rx-packets"), Stat("port1-floods")));
            Assert.Equal((0, 0), (Stat("port0-rx-dropped"), Stat("port1-tx-dropped")));
            Assert.Equal((11, 11), (Stat("tx-packets"), Stat("rx-packets")));
            Assert.Equal(2, Stat("mac-entries"));
        }
        finally { Directory.Delete(dir, true); }
    }
}

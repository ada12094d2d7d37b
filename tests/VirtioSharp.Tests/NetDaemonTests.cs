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
}

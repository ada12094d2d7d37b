using System.Text.Json;
using System.Text.RegularExpressions;
using VirtioSharp.Cli;
using VirtioSharp.Drivers;
using VirtioSharp.Spec;
using VirtioSharp.Testing;
using VirtioSharp.Tests.Support;
using VirtioSharp.VhostUser.Frontend;

namespace VirtioSharp.Tests;

/// <summary>`virtio-sharp vhost-user-rng` on the shared daemon host: its own capabilities, bad options, and a real run.</summary>
public class RngDaemonTests
{
    private static readonly TimeSpan Limit = TimeSpan.FromSeconds(30);

    private static (int Rc, string Out, string Err) Run(params string[] args) => InProcessCli.Run(args);

    [Theory]
    [InlineData("vhost-user-rng", "rng", "max-bytes-per-second")]
    [InlineData("vhost-user-blk", "block", "blk-file")]
    [InlineData("vhost-user-blk", "block", "migration")]
    [InlineData("vhost-user-rng", "rng", "migration")]
    public void EachDevicePrintsItsOwnCapabilities(string command, string type, string feature)
    {
        var (rc, o, e) = Run(command, "--print-capabilities");
        Assert.Equal(0, rc);
        Assert.Equal("", e);
        using var doc = JsonDocument.Parse(o);
        Assert.Equal(type, doc.RootElement.GetProperty("type").GetString());
        Assert.Contains(feature, doc.RootElement.GetProperty("features").EnumerateArray().Select(x => x.GetString()));
    }

    [Theory]
    [InlineData("--max-bytes-per-second", "-5")]
    [InlineData("--queue-size", "100")]
    public void BadOptionsExitWithTwoAndSayWhy(string option, string value)
    {
        var (rc, _, e) = Run("vhost-user-rng", "--socket-path", "/tmp/vs-never-bound.sock", option, value);
        Assert.Equal(2, rc);
        Assert.Contains(option, e);
        Assert.False(File.Exists("/tmp/vs-never-bound.sock"));
    }

    [Fact]
    public void TheDaemonServesEntropyAndCountsItInTheFinalStats()
    {
        var dir = Directory.CreateTempSubdirectory("vs-rng-cli-").FullName;
        try
        {
            string sock = Path.Combine(dir, "rng.sock");
            using var cli = CliProcess.Start("vhost-user-rng", "--socket-path", sock);
            cli.WaitForOutput("serving entropy", Limit);
            const int Bytes = 200_000;
            using (var fe = VhostUserFrontend.Connect(sock, DeviceId.Entropy, 16 << 20))
            using (var drv = EntropyDriver.Probe(fe, fe.Environment()))
            {
                var buf = new byte[50_000];
                for (int got = 0; got < Bytes;) got += drv.Read(buf);
            }
            cli.WaitForOutput("waiting for the next front-end", Limit);
            using (var kill = System.Diagnostics.Process.Start("kill", ["-TERM", cli.Id.ToString()])) kill.WaitForExit();
            Assert.Equal(0, cli.WaitForExit(Limit));
            var m = Regex.Match(cli.StdOut, @"final stats: connections 1 requests (\d+) bytes-served (\d+) ");
            Assert.True(m.Success, cli.Output);
            Assert.Equal(4, int.Parse(m.Groups[1].Value));
            Assert.Equal(Bytes, long.Parse(m.Groups[2].Value));
        }
        finally { Directory.Delete(dir, true); }
    }
}

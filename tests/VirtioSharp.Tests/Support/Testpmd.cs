using System.Diagnostics;
using System.Text;
using System.Text.RegularExpressions;

namespace VirtioSharp.Tests.Support;

/// <summary>
/// DPDK 22.11's dpdk-testpmd in interactive mode (<c>-i</c>, commands on stdin), as a vhost-user back-end
/// (<c>net_vhost0</c>) or front-end (<c>net_virtio_user0</c>). No hugepages (<c>--no-huge -m 1024</c>), two lcores
/// (main + forwarding, the forwarding one on <c>forwardCpu</c>), a unique <c>--file-prefix</c> so runs never share DPDK's
/// runtime directory. Its output is kept for assertions and failure messages; Dispose kills it if it still runs.
/// </summary>
public sealed class Testpmd : IDisposable
{
    private readonly Process _p;
    private readonly StringBuilder _out = new();

    private Testpmd(IEnumerable<string> args)
    {
        // stdbuf: testpmd's stdio would hold its output in a block buffer on a pipe until it exits.
        var psi = new ProcessStartInfo("stdbuf")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
        };
        psi.ArgumentList.Add("-oL");
        psi.ArgumentList.Add("dpdk-testpmd");
        foreach (var a in args) psi.ArgumentList.Add(a);
        _p = new Process { StartInfo = psi };
        _p.OutputDataReceived += (_, e) => Append(e.Data);
        _p.ErrorDataReceived += (_, e) => Append(e.Data);
        Assert.True(File.Exists("/usr/bin/dpdk-testpmd"), "dpdk-testpmd is not installed: bash scripts/testbed/setup.sh installs DPDK 22.11 (packages dpdk, dpdk-dev)");
        _p.Start();
        _p.BeginOutputReadLine();
        _p.BeginErrorReadLine();
    }

    private static IEnumerable<string> Eal(int forwardCpu, string prefix, string vdev, bool singleFile) =>
        ["-l", "0,1", "--main-lcore", (1 - forwardCpu).ToString(), "--no-huge", "-m", "1024", "--no-pci",
         .. singleFile ? new[] { "--single-file-segments" } : [],
         $"--file-prefix={prefix}{Environment.ProcessId}x{Interlocked.Increment(ref s_runs)}", "--vdev", vdev, "--"];

    private static int s_runs;

    /// <summary>
    /// testpmd as the vhost-user back-end on <paramref name="socket"/> (it listens), forwarding in
    /// <paramref name="forwardMode"/> (io: every frame back as it came); <paramref name="iommu"/> adds
    /// <c>iommu-support=1</c> (it then offers ACCESS_PLATFORM and asks for translations with IOTLB MISS).
    /// Forwarding starts at once; returns when the socket exists.
    /// </summary>
    public static Testpmd Backend(string socket, string forwardMode = "io", bool iommu = false, TimeSpan? timeout = null)
    {
        var t = new Testpmd([.. Eal(0, "vsb", $"net_vhost0,iface={socket},queues=1{(iommu ? ",iommu-support=1" : "")}", false),
            "-i", "--total-num-mbufs=16384", $"--forward-mode={forwardMode}"]);
        t.WaitForPrompt(timeout ?? TimeSpan.FromSeconds(60));
        t.Command("start");
        var end = DateTime.UtcNow + (timeout ?? TimeSpan.FromSeconds(60));
        while (!File.Exists(socket))
        {
            if (t._p.HasExited || DateTime.UtcNow > end) Assert.Fail($"dpdk-testpmd made no socket {socket}\n{t.Output}");
            Thread.Sleep(50);
        }
        return t;
    }

    /// <summary>
    /// testpmd as the virtio-user front-end of the back-end on <paramref name="socket"/> (<c>--single-file-segments</c>:
    /// its memory is one file it can send), with frames of <paramref name="frameBytes"/>; forwarding is started with
    /// <see cref="Command"/> (e.g. <c>start</c>, <c>start tx_first 4</c>).
    /// </summary>
    public static Testpmd Frontend(string socket, string forwardMode, int frameBytes, TimeSpan? timeout = null)
    {
        var t = new Testpmd([.. Eal(1, "vsf", $"net_virtio_user0,path={socket},queues=1", true),
            "-i", "--total-num-mbufs=16384", $"--forward-mode={forwardMode}", $"--txpkts={frameBytes}"]);
        t.WaitForPrompt(timeout ?? TimeSpan.FromSeconds(60));
        Assert.True(!t.Output.Contains("No probed ethernet devices", StringComparison.Ordinal), $"virtio-user did not connect to {socket}\n{t.Output}");
        return t;
    }

    // The prompt has no newline, so the line reader never delivers it: the port start's last line stands for it.
    private void WaitForPrompt(TimeSpan timeout)
    {
        WaitForOutput("Checking link statuses...", timeout);
        int at;
        lock (_out) at = _out.ToString().IndexOf("Checking link statuses...", StringComparison.Ordinal);
        WaitForOutput("Done", timeout, at);
    }

    public string Output { get { lock (_out) return _out.ToString(); } }

    private void Append(string? line)
    {
        if (line is null) return;
        lock (_out) { _out.AppendLine(line); Monitor.PulseAll(_out); }
    }

    /// <summary>One command line on testpmd's prompt.</summary>
    public void Command(string line)
    {
        _p.StandardInput.WriteLine(line);
        _p.StandardInput.Flush();
    }

    /// <summary>Waits until the output after character <paramref name="from"/> contains <paramref name="fragment"/>.</summary>
    public void WaitForOutput(string fragment, TimeSpan timeout, int from = 0)
    {
        var end = DateTime.UtcNow + timeout;
        lock (_out)
        {
            while (_out.Length < from || _out.ToString(from, _out.Length - from).IndexOf(fragment, StringComparison.Ordinal) < 0)
            {
                var left = end - DateTime.UtcNow;
                if (left <= TimeSpan.Zero || _p.HasExited)
                    Assert.Fail($"dpdk-testpmd did not print \"{fragment}\" within {timeout.TotalSeconds:F0} s\n{ChildProcess.Tail(_out.ToString())}");
                Monitor.Wait(_out, TimeSpan.FromMilliseconds(Math.Min(200, left.TotalMilliseconds)));
            }
        }
    }

    /// <summary>Port 0's counters (<c>show port stats 0</c>).</summary>
    public PortStats Stats()
    {
        int from;
        lock (_out) from = _out.Length;
        Command("show port stats 0");
        WaitForOutput("Tx-bps", TimeSpan.FromSeconds(20), from);
        string text;
        lock (_out) text = _out.ToString(from, _out.Length - from);
        long Get(string name)
        {
            var m = Regex.Match(text, $@"{Regex.Escape(name)}:\s+(\d+)");
            Assert.True(m.Success, $"no {name} in testpmd's port stats:\n{text}");
            return long.Parse(m.Groups[1].Value);
        }
        return new PortStats(Get("RX-packets"), Get("RX-bytes"), Get("TX-packets"), Get("TX-bytes"), Get("RX-missed"), Get("TX-errors"));
    }

    /// <summary>Stops forwarding (its forward statistics then stay as they are).</summary>
    public void Stop()
    {
        int from;
        lock (_out) from = _out.Length;
        Command("stop");
        WaitForOutput("Done.", TimeSpan.FromSeconds(20), from);
    }

    /// <summary>Quits (closing its port and the vhost-user connection) and waits for the exit.</summary>
    public void Quit(TimeSpan? timeout = null)
    {
        Command("quit");
        if (!_p.WaitForExit(timeout ?? TimeSpan.FromSeconds(30))) Assert.Fail($"dpdk-testpmd did not quit\n{ChildProcess.Tail(Output)}");
        _p.WaitForExit();
    }

    public void Dispose()
    {
        try
        {
            if (!_p.HasExited)
            {
                _p.Kill(entireProcessTree: true);
                _p.WaitForExit();
            }
        }
        catch (InvalidOperationException) { }
        _p.Dispose();
    }

    /// <summary>testpmd's NIC statistics of port 0.</summary>
    public readonly record struct PortStats(long RxPackets, long RxBytes, long TxPackets, long TxBytes, long RxMissed, long TxErrors);
}

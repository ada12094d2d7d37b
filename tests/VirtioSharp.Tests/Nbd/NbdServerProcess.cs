using System.Diagnostics;
using System.Net.Sockets;

namespace VirtioSharp.Tests.Nbd;

/// <summary>A real NBD server (qemu-nbd or nbdkit) on a Unix socket in a private directory; killed on dispose.</summary>
internal sealed class NbdServerProcess : IDisposable
{
    private readonly string _exe;
    private readonly Func<string, string[]> _args;
    private Process? _p;

    private NbdServerProcess(string exe, Func<string, string[]> args, string dir)
    {
        _exe = exe;
        _args = args;
        Dir = dir;
        Socket = Path.Combine(dir, "nbd.sock");
    }

    public string Dir { get; }
    public string Socket { get; }
    public string Uri => $"nbd+unix:///?socket={Socket}";

    public static string NewDir()
    {
        var d = Path.Combine(Path.GetTempPath(), "vs-nbd-" + Guid.NewGuid().ToString("N")[..10]);
        Directory.CreateDirectory(d);
        return d;
    }

    /// <summary>nbdkit in the foreground: <paramref name="args"/> are the filters, plugin and its parameters.</summary>
    public static NbdServerProcess Nbdkit(string dir, params string[] args) =>
        Started(new NbdServerProcess("/usr/bin/nbdkit", sock => ["-f", "--exit-with-parent", "-U", sock, .. args], dir));

    /// <summary>qemu-nbd serving a raw <paramref name="image"/>, persistent (it keeps serving after a client leaves).</summary>
    public static NbdServerProcess QemuNbd(string dir, string image, params string[] extra) =>
        Started(new NbdServerProcess("/usr/bin/qemu-nbd", sock => ["-f", "raw", "-k", sock, "-t", .. extra, image], dir));

    private static NbdServerProcess Started(NbdServerProcess s) { s.Start(); return s; }

    public void Start()
    {
        if (File.Exists(Socket)) File.Delete(Socket);
        var psi = new ProcessStartInfo(_exe) { RedirectStandardError = true, RedirectStandardOutput = true, UseShellExecute = false };
        foreach (var a in _args(Socket)) psi.ArgumentList.Add(a);
        _p = Process.Start(psi)!;
        _p.BeginErrorReadLine();
        _p.BeginOutputReadLine();
        var deadline = Environment.TickCount64 + 10_000;
        while (Environment.TickCount64 < deadline)
        {
            if (_p.HasExited) throw new InvalidOperationException($"{_exe} exited with {_p.ExitCode}");
            if (File.Exists(Socket))
            {
                try
                {
                    using var s = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
                    s.Connect(new UnixDomainSocketEndPoint(Socket));
                    return;
                }
                catch (SocketException) { }
            }
            Thread.Sleep(20);
        }
        throw new TimeoutException($"{_exe} did not listen on {Socket}");
    }

    /// <summary>SIGKILL: the server vanishes mid-I/O without a word.</summary>
    public void Kill()
    {
        if (_p is { HasExited: false }) { _p.Kill(); _p.WaitForExit(5000); }
        _p?.Dispose();
        _p = null;
    }

    public void Dispose()
    {
        Kill();
        try { Directory.Delete(Dir, true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }
}

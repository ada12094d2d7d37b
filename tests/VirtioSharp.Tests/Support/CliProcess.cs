using System.Diagnostics;
using System.Text;

namespace VirtioSharp.Tests.Support;

/// <summary>
/// The real CLI as a child process: <c>dotnet virtio-sharp.dll</c> from the test output directory (the test project
/// references the CLI project, so its build lands there), optionally under a launcher such as systemd-socket-activate.
/// Output is captured for assertions and failure messages; Dispose kills it if it is still running.
/// </summary>
public sealed class CliProcess : IDisposable
{
    private readonly Process _process;
    private readonly StringBuilder _out = new(), _err = new();

    private CliProcess(ProcessStartInfo psi)
    {
        _process = new Process { StartInfo = psi };
        _process.OutputDataReceived += (_, e) => Append(_out, e.Data);
        _process.ErrorDataReceived += (_, e) => Append(_err, e.Data);
        _process.Start();
        _process.StandardInput.Close();
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();
    }

    /// <summary>Starts <c>[launcher...] dotnet virtio-sharp.dll args...</c>.</summary>
    public static CliProcess Start(IEnumerable<string> launcher, params string[] args)
    {
        string dll = Path.Combine(AppContext.BaseDirectory, "virtio-sharp.dll");
        Assert.True(File.Exists(dll), $"the CLI is not built next to the tests: {dll} is missing");
        var argv = launcher.Concat([Dotnet(), dll]).Concat(args).ToList();
        var psi = new ProcessStartInfo(argv[0])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
        };
        foreach (var a in argv.Skip(1)) psi.ArgumentList.Add(a);
        return new CliProcess(psi);
    }

    public static CliProcess Start(params string[] args) => Start([], args);

    // A launcher execs by path, so resolve dotnet on PATH once here.
    private static string Dotnet()
    {
        foreach (var dir in (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':', StringSplitOptions.RemoveEmptyEntries))
            if (File.Exists(Path.Combine(dir, "dotnet"))) return Path.Combine(dir, "dotnet");
        throw new InvalidOperationException("dotnet is not on PATH");
    }

    public int Id => _process.Id;
    public bool HasExited => _process.HasExited;
    public string StdOut { get { lock (_out) return _out.ToString(); } }
    public string StdErr { get { lock (_err) return _err.ToString(); } }
    public string Output => $"--- stdout ---\n{StdOut}--- stderr ---\n{StdErr}";

    private void Append(StringBuilder sb, string? line)
    {
        if (line is null) return;
        lock (sb) sb.AppendLine(line);
        lock (_out) Monitor.PulseAll(_out);
    }

    /// <summary>Waits until stdout contains <paramref name="fragment"/>; fails with the output on timeout.</summary>
    public void WaitForOutput(string fragment, TimeSpan timeout)
    {
        var end = DateTime.UtcNow + timeout;
        lock (_out)
        {
            while (!_out.ToString().Contains(fragment, StringComparison.Ordinal))
            {
                var left = end - DateTime.UtcNow;
                if (left <= TimeSpan.Zero) Assert.Fail($"the CLI did not print \"{fragment}\" within {timeout.TotalSeconds:F0} s\n{Output}");
                Monitor.Wait(_out, left);
            }
        }
    }

    /// <summary>Waits for the process to exit and returns its exit code; fails with the output on timeout.</summary>
    public int WaitForExit(TimeSpan timeout)
    {
        if (!_process.WaitForExit(timeout)) Assert.Fail($"the CLI (pid {Id}) was still running after {timeout.TotalSeconds:F0} s\n{Output}");
        _process.WaitForExit();   // drains the redirected streams
        return _process.ExitCode;
    }

    public void Dispose()
    {
        try
        {
            if (!_process.HasExited)
            {
                _process.Kill(entireProcessTree: true);
                _process.WaitForExit();
            }
        }
        catch (InvalidOperationException) { }   // exited between the check and the kill
        _process.Dispose();
    }
}

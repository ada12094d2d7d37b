using System.Diagnostics;
using System.Text;

namespace VirtioSharp.Tests.Support;

/// <summary>Runs a program to completion with a time limit and returns its exit code and merged output.</summary>
public static class ChildProcess
{
    /// <summary>The exit code and stdout+stderr (interleaved by line) of one run.</summary>
    public readonly record struct Result(int ExitCode, string Output);

    /// <summary>
    /// Runs <paramref name="file"/> with <paramref name="args"/> (no stdin) in <paramref name="workDir"/> with extra
    /// environment variables; a run past <paramref name="limit"/> is killed with its process tree and fails the test.
    /// </summary>
    public static Result Run(string file, IEnumerable<string> args, TimeSpan limit, string? workDir = null, IDictionary<string, string>? env = null)
    {
        var psi = new ProcessStartInfo(file)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
            WorkingDirectory = workDir ?? Environment.CurrentDirectory,
        };
        foreach (var a in args) psi.ArgumentList.Add(a);
        if (env is not null) foreach (var (k, v) in env) psi.Environment[k] = v;
        var output = new StringBuilder();
        using var p = new Process { StartInfo = psi };
        p.OutputDataReceived += (_, e) => { if (e.Data is not null) lock (output) output.AppendLine(e.Data); };
        p.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (output) output.AppendLine(e.Data); };
        p.Start();
        p.StandardInput.Close();
        p.BeginOutputReadLine();
        p.BeginErrorReadLine();
        if (!p.WaitForExit(limit))
        {
            p.Kill(entireProcessTree: true);
            p.WaitForExit();
            lock (output) Assert.Fail($"{file} {string.Join(' ', args)} still running after {limit.TotalSeconds:F0} s; killed.\n{Tail(output.ToString())}");
        }
        p.WaitForExit();   // drains the redirected streams
        lock (output) return new Result(p.ExitCode, output.ToString());
    }

    /// <summary>The last <paramref name="lines"/> lines of a long output, for failure messages.</summary>
    public static string Tail(string text, int lines = 60)
    {
        var all = text.Split('\n');
        return string.Join('\n', all.Skip(Math.Max(0, all.Length - lines)));
    }
}

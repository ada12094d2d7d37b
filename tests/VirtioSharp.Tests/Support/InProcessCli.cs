using VirtioSharp.Cli;

namespace VirtioSharp.Tests.Support;

/// <summary>The command line run in-process, its output captured: for option checks that need no real process.</summary>
public static class InProcessCli
{
    /// <summary>Runs <c>virtio-sharp args...</c>; returns the exit code, stdout and stderr.</summary>
    public static (int Rc, string Out, string Err) Run(params string[] args)
    {
        var o = new StringWriter();
        var e = new StringWriter();
        int rc = CliApp.Run(args, o, e);
        return (rc, o.ToString(), e.ToString());
    }
}

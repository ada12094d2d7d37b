using System.CommandLine;

namespace VirtioSharp.Cli.Daemon;

/// <summary>
/// One `vhost-user-&lt;device&gt;` command: its name, help, --print-capabilities answer (vhost-user.rst "Backend program
/// conventions": the type and the device's own features), extra options, and how to build the device from them and
/// the number of sockets to serve (an error message instead, for exit code 2). Only a command with
/// <paramref name="MultiSocket"/> takes --socket-path more than once (one device per socket, <see cref="DaemonDevice.Devices"/>).
/// </summary>
internal sealed record DeviceCommandSpec(
    string Name,
    string Description,
    string CapabilityType,
    IReadOnlyList<string> CapabilityFeatures,
    IReadOnlyList<Option> Options,
    Func<ParseResult, int, (DaemonDevice? Device, string? Error)> Build,
    bool MultiSocket = false);
